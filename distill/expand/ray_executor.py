"""The expand step on Ray Data: the same rows as the local executor, spread over a pool of model actors.

Two passes, as the local executor makes them (Ray Data schedules and streams each; no scheduler of our own):

    pairs:    read_json(todo files: chunks without pairs) -> map_batches(PairsStage) -> write_json
    rewrite:  read_json(todo files: jobs without rewrite) -> map_batches(RewriteStage) -> write_json

Between the passes the driver folds the new pairs rows into `pairs.jsonl` and writes the rewrite jobs, so it
knows how many there are and cuts them into shrinking blocks of whole generation batches (`ray_io`); each
pass has every worker (a GPU each, with vLLM) to itself, and SLM-1 is gone before SLM-2 loads. Each actor
holds at most two blocks, the one it generates and the next, so it never waits on the driver between
blocks, and the last blocks are one batch each, so all workers stay busy to within about a batch of the end.
Rows travel as JSON strings (one `item` column) so Arrow never has to unify nested schemas across blocks,
and are built by the spec's jobs and `mga.distill.label.rows`' builders, as the local executor builds them:
cleaning, statistics and content-keyed resume (`todo`) are shared, a rerun sends only the chunks and pairs
that have no current row, and starts no Ray when there are none. No collection of rows is ever held on the
driver. A pass whose tool model is served by an endpoint (`--backend openai`) runs in the driver instead, as
the local executor runs it. Locally, Ray starts with `num_cpus=workers`; give `ray_address` to join a
cluster (then the output folder must be on a file system every node sees).
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
from mga.distill.expand.ray_io import (
    RAY_DIR,
    Todo,
    fold_outputs,
    run_folder,
    write_todo,
)
from mga.distill.expand.spec import REWRITE_ATTEMPTS, ExpandSpec, Which
from mga.distill.expand.todo import job_status, left_to_do, missing, open_streams
from mga.distill.generate.protocol import Request
from mga.distill.label.rows import (
    pairs_result_row,
    pairs_validator,
    rewrite_request,
    rewrite_result_row,
)

# logical CPUs, so that `workers` actors and a read and a write task fit in `workers` CPUs (a task asking for a
# whole CPU beside the actor pool would never be scheduled); each CPU actor runs one torch thread
ACTOR_CPUS, IO_CPUS = 0.5, 0.25
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


def _batch(kind: str, rows: list[dict[str, Any]], began: float) -> dict[str, Any]:
    """The block's rows, stamped with when it began and ended generating (for the pass's timings)."""
    import numpy as np

    now = time.time()
    items = [json.dumps({"kind": kind, "row": row, "began": began, "t": now}, ensure_ascii=False) for row in rows]
    return {"item": np.array(items, dtype=object)}


class PairsStage:
    """SLM-1 on one actor: the pairs row of every chunk in a block."""

    def __init__(self, spec: ExpandSpec):
        self.spec = spec
        self.generator = spec.generator("pairs")
        _quiet_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        began, spec, model, params = time.time(), self.spec, self.generator.model_name, self.spec.params()
        jobs = {it["key"]: spec.pairs_job(it["meta"]) for it in _items(batch)}
        requests = [Request(key, job.messages, params) for key, job in jobs.items()]
        results = self.generator.run(requests, validate=pairs_validator(spec.num_pairs),
                                     max_attempts=spec.max_validation_attempts, description="pairs")
        return _batch("pairs", [pairs_result_row(jobs[r.request.key], r, model) for r in results], began)


class RewriteStage:
    """SLM-2 on one actor: the rewrite row of every (chunk, pair) job in a block."""

    def __init__(self, spec: ExpandSpec):
        self.spec = spec
        self.generator = spec.generator("rewrite")
        _quiet_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        began, spec, model, params = time.time(), self.spec, self.generator.model_name, self.spec.params()
        jobs = {it["key"]: spec.rewrite_job(it["meta"]) for it in _items(batch)}
        requests = [rewrite_request(key, job, params, spec.language) for key, job in jobs.items()]
        results = self.generator.run(requests, max_attempts=REWRITE_ATTEMPTS, description="rewrite")
        return _batch("rewrite", [rewrite_result_row(jobs[r.request.key], r, spec.variant, model, spec.max_new_tokens)
                                  for r in results], began)


STAGES = {"pairs": PairsStage, "rewrite": RewriteStage}


# ---- the driver ------------------------------------------------------------------------------------------------


def start_ray(address: str | None, workers: int) -> bool:
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


def _todo(work_dir: Path, spec: ExpandSpec, which: Which, workers: int) -> Todo:
    """The pass's jobs without a current row, as Ray Data input files."""
    chunks_path = work_dir / "chunks.jsonl"
    with open_streams(work_dir) as (pairs, rewrites):
        count = left_to_do(which, chunks_path, spec, pairs, rewrites)
        jobs = missing(job_status(which, chunks_path, spec, pairs, rewrites)) if count else iter(())
        return write_todo(work_dir, which, ({"key": key, "meta": job.meta} for key, job in jobs), count, workers,
                          spec.batch_size)


def _pass(work_dir: Path, spec: ExpandSpec, which: Which, todo: Todo, workers: int) -> dict[str, float]:
    """One Ray Data pass over `todo`; the timings of its rows once folded into the shard's streams."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty()
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    begun = time.time()
    resources = {"num_gpus": 1} if spec.backend(which) == "vllm" else {"num_cpus": ACTOR_CPUS}
    size = min(workers, len(todo.files))
    console.print(f"expand (ray): {which}: {todo.items} to generate in {len(todo.files)} blocks, {size} workers",
                  markup=False)
    ds = ray.data.read_json([str(p) for p in todo.files], override_num_blocks=len(todo.files),
                              num_cpus=IO_CPUS)
    ds = ds.map_batches(STAGES[which], fn_constructor_kwargs={"spec": spec}, batch_size=None, **resources,
                        compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2))
    ds.write_json(str(run_folder(work_dir, todo.run_id)), ray_remote_args={"num_cpus": IO_CPUS})
    first, last = fold_outputs(work_dir)
    first, last = first or time.time(), last or time.time()
    return {"on": "ray", "startup_s": round(first - begun, 3), "generate_s": round(last - first, 3),
            "wall_s": round(time.time() - begun, 3)}


def run_on_ray(
    work_dir: Path, spec: ExpandSpec, *, workers: int | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Generate the missing pairs rows, then the missing rewrite rows, of work_dir's chunks on Ray Data.

    A pass whose tool model is served by an endpoint (`openai` backend) runs in the driver, as the local
    executor runs it: the server does the work and one async client keeps it busy, so actors would add only
    their start-up. Returns per pass `wall_s`, and for a Ray pass `startup_s` until an actor began its first
    block (reading, actors, imports, model loading) and `generate_s` from then to its last row (where
    throughput scales with workers). Ray is started only when a pass needs it."""
    from mga.distill.expand.local import run_local_pass

    fold_outputs(work_dir)  # rows a killed run left in Ray's output folder
    workers = workers or (None if ray_address else os.cpu_count() or 1)
    timings: dict[str, Any] = {"workers": 0}
    started = False
    try:
        for which in ("pairs", "rewrite"):
            begun = time.time()
            if spec.backend(which) == "openai":
                run_local_pass(work_dir, spec, which)
                timings[which] = {"on": "driver", "wall_s": round(time.time() - begun, 3)}
                continue
            todo = _todo(work_dir, spec, which, workers or 1)
            if not todo.items:
                continue
            if not timings["workers"]:
                started = start_ray(ray_address, workers or 1)
                if workers is None:  # on a cluster, default to one worker per CPU it has
                    import ray

                    workers = max(1, int(ray.cluster_resources().get("CPU", 1) - 2 * IO_CPUS))
                    todo = _todo(work_dir, spec, which, workers)
                timings["workers"] = workers
            timings[which] = _pass(work_dir, spec, which, todo, workers)
    finally:
        if started:
            import ray

            ray.shutdown()
    shutil.rmtree(work_dir / RAY_DIR, ignore_errors=True)  # the input files; every output is folded in
    return timings
