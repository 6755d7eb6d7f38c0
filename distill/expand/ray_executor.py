"""The expand step on Ray Data: the same rows as the local executor, spread over a pool of model actors.

Pipeline (Ray Data schedules and streams it; this module writes no scheduler of its own):

    read_json(todo files)    the chunks with work left, written by the driver as a stream (`ray_io`)
      -> map_batches(PairsStage)    one SLM-1 actor per worker, the model loaded once per actor
      -> flat_map(explode)          a pairs row -> one item per (chunk, pair) still to rewrite
      -> map_batches(RewriteStage)  one SLM-2 actor per worker
      -> write_json(out folder)     Ray's writer; the driver then appends the rows to pairs.jsonl / rewrites.jsonl

Rows travel as JSON strings (one `item` column) so Arrow never has to unify nested schemas across blocks.
The rows are built by `mga.distill.label.labeling`'s row builders, as the local executor builds them, so
cleaning, statistics and resume are shared: a rerun sends only the chunks and pairs that have no row yet,
and starts no Ray at all when there are none. No collection of rows is ever held on the driver. Locally,
Ray starts with `num_cpus=workers`; give `ray_address` to join a cluster (then the output folder must be on
a file system every node sees).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.schema import OK, chunk_key, rewrite_key
from mga.distill.expand.ray_io import RAY_DIR, fold_outputs, run_folder, write_todo
from mga.distill.expand.spec import REWRITE_ATTEMPTS, ExpandSpec
from mga.distill.generate.protocol import Completion, Request
from mga.distill.label.rows import (
    pairs_job,
    pairs_result_row,
    rewrite_job,
    rewrite_request,
    rewrite_result_row,
)
from mga.judge.pairs_check import parse_pairs

# logical CPUs, so that both stages' pools and the read/explode/write tasks fit in `workers` CPUs (SLM-2 makes
# 5x the calls); a read or write task asking for a whole CPU beside the actor pools would never be scheduled
CPUS = {"pairs": 0.25, "explode": 0.25, "rewrite": 0.5, "io": 0.25}
OBJECT_STORE_BYTES = 200 * 1024**2
# forwarded to workers; secrets (OPENAI_API_KEY) are not: a runtime_env is stored and shown by the cluster
_WORKER_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENAI_BASE_URL")


# ---- the Ray Data stages ---------------------------------------------------------------------------------------


def _quiet_worker() -> None:
    """One torch thread per CPU actor (the pool, not threads, uses the cores); no per-batch console output."""
    console.quiet = True
    torch = sys.modules.get("torch")  # loaded by a local model; an endpoint client never needs it
    if torch is not None and not torch.cuda.is_available():
        torch.set_num_threads(1)


def _items(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(s) for s in batch["item"]]


def _batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    return {"item": np.array([json.dumps(it, ensure_ascii=False) for it in items], dtype=object)}


class PairsStage:
    """SLM-1 on one actor: a pairs row for every item that has a chunk and no pairs row yet."""

    def __init__(self, spec: ExpandSpec):
        self.spec = spec
        self.generator = spec.generator("pairs")
        _quiet_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = _items(batch)
        todo = {chunk_key(it["chunk"]): it for it in items if it.get("pairs") is None}
        model, params = self.generator.model_name, self.spec.params()
        jobs = {key: pairs_job(it["chunk"]["meta"], self.spec.language, self.spec.num_pairs, params, model)
                for key, it in todo.items()}
        requests = [Request(key, job.messages, params) for key, job in jobs.items()]

        def validate(completion: Completion) -> tuple[Any, str | None]:
            return parse_pairs(completion.text, self.spec.num_pairs)

        for result in self.generator.run(requests, validate=validate,
                                         max_attempts=self.spec.max_validation_attempts, description="pairs"):
            item = todo[result.request.key]
            item["pairs"] = pairs_result_row(jobs[result.request.key], result, model)
            item["new"] = True
        return _batch(items)


def explode(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A chunk with its pairs row -> the new pairs row (for the driver) + one job per pair still to rewrite."""
    item = json.loads(row["item"])
    prow = item["pairs"]
    out: list[dict[str, Any]] = [{"kind": "pairs", "row": prow, "t": time.time()}] if item.get("new") else []
    if prow["status"] == OK:
        done = set(item.get("done_pair_ids", []))
        for pair_id, pair in enumerate(prow["pairs"]):
            if pair_id not in done:
                meta = {**prow["meta"], "genre": pair["genre"], "audience": pair["audience"], "pair_id": pair_id}
                out.append({"kind": "job", "meta": meta})
    return [{"item": json.dumps(it, ensure_ascii=False)} for it in out]


class RewriteStage:
    """SLM-2 on one actor: a rewrite row for every (chunk, pair) job; pairs rows pass through."""

    def __init__(self, spec: ExpandSpec):
        self.spec = spec
        self.generator = spec.generator("rewrite")
        _quiet_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = _items(batch)
        spec = self.spec
        model, params = self.generator.model_name, spec.params()
        jobs = {rewrite_key({"meta": it["meta"], "variant": spec.variant}):
                rewrite_job(it["meta"], spec.variant, spec.language, params, model) for it in items if it["kind"] == "job"}
        out = [it for it in items if it["kind"] != "job"]
        requests = [rewrite_request(key, job, params, spec.language) for key, job in jobs.items()]
        for result in self.generator.run(requests, max_attempts=REWRITE_ATTEMPTS, description="rewrite"):
            row = rewrite_result_row(jobs[result.request.key], result, spec.variant, model, spec.max_new_tokens)
            out.append({"kind": "rewrite", "row": row, "t": time.time()})
        return _batch(out)


# ---- the driver ------------------------------------------------------------------------------------------------


def _start_ray(address: str | None, workers: int) -> bool:
    """Join the cluster at `address`, or start a small local Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: os.environ[k] for k in _WORKER_ENV if k in os.environ})
    try:
        if address:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                     runtime_env={"env_vars": env}, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise MgaError(f"cannot start {where}: {e.__class__.__name__}: {e}") from None
    return True


def _resources(spec: ExpandSpec, which: str) -> dict[str, float]:
    """A vLLM actor takes a GPU; a CPU model actor a share of a CPU (see `CPUS`)."""
    return {"num_gpus": 1} if spec.backend(which) == "vllm" else {"num_cpus": CPUS[which]}


def run_on_ray(
    work_dir: Path, spec: ExpandSpec, *, workers: int | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Generate the missing pairs and rewrite rows of work_dir's chunks on Ray Data into its JSONL streams.

    Returns timings: `startup_s` until the first row was made (Ray, actors, model loading) and `generate_s`
    from the first row to the last (the steady state, where throughput scales with workers)."""
    fold_outputs(work_dir)  # rows a killed run left in Ray's output folder
    workers = workers or (None if ray_address else os.cpu_count() or 1)
    todo = write_todo(work_dir, spec, workers or 1)
    if not todo.items:
        console.print("expand (ray): every chunk already has its rows, nothing to generate", markup=False)
        return {"workers": 0, "startup_s": 0.0, "generate_s": 0.0}
    begun = time.time()
    started = _start_ray(ray_address, workers or 1)
    try:
        import ray
        import ray.data

        if workers is None:  # on a cluster, default to one worker per CPU it has
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) - CPUS["explode"]))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty()
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        io = {"num_cpus": CPUS["io"]}
        ds = ray.data.read_json([str(p) for p in todo.files], override_num_blocks=len(todo.files),
                                ray_remote_args=io)
        ds = ds.map_batches(PairsStage, fn_constructor_kwargs={"spec": spec}, batch_size=spec.batch_size,
                            compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo.files))),
                            **_resources(spec, "pairs"))
        ds = ds.flat_map(explode, num_cpus=CPUS["explode"])
        ds = ds.map_batches(RewriteStage, fn_constructor_kwargs={"spec": spec}, batch_size=spec.batch_size,
                            compute=ray.data.ActorPoolStrategy(size=workers), **_resources(spec, "rewrite"))
        console.print(f"expand (ray): {todo.items} chunks with work left ({todo.expected} rewrites), "
                      f"{workers} workers per stage", markup=False)
        ds.write_json(str(run_folder(work_dir, todo.run_id)), ray_remote_args=io)
    finally:
        if started:
            import ray

            ray.shutdown()
    first, last = fold_outputs(work_dir)
    shutil.rmtree(work_dir / RAY_DIR, ignore_errors=True)  # the input files; every output is folded in
    first, last = first or time.time(), last or time.time()
    return {"workers": workers, "startup_s": round(first - begun, 3), "generate_s": round(last - first, 3)}
