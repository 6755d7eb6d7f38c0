"""The expand step on Ray: the same rows as the local executor, from a pool of model actors.

Two passes, as the local executor makes them: pairs (SLM-1, one job per chunk), then rewrites (SLM-2, one job
per (chunk, pair)); each pass has every worker (a GPU each, with vLLM) to itself, and SLM-1 is gone before
SLM-2 loads. For a pass the driver streams the jobs that have no current row (`todo`, by content, shared
with the local executor), cuts them into shrinking blocks of whole generation batches (`blocks`), keeps two
blocks on each actor (the one it generates and the next, so it never waits on the driver) and appends each
returned block's rows to the shard's `pairs.jsonl` / `rewrites.jsonl` as it arrives, as the local executor
does. A kill loses only the blocks in flight, and the rerun sends exactly those; when nothing is left, Ray
is not started. The driver holds at most two blocks per actor, never the pass. Rows are built by the same
loop on both executors (`answer`).

Plain actors and `ray.wait` rather than Ray Data: a pass is one map over blocks whose results go to one
file, and Ray Data's streaming executor, statistics, autoscaling and location-tracking actors and read and
write tasks took about 6% of a core on top of Ray itself while both actors generated on the 2-core
development machine, where every percent is taken from the actors (docs/expand.md). Results travel back to
the driver, so on a cluster only the tool models need to be at the same path on every node.

A pass whose tool model is served by an endpoint (`--backend openai`) runs in the driver instead, as the local
executor runs it. Locally, Ray starts with `num_cpus=workers`; give `ray_address` to join a cluster.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from mga.distill.core.console import console, progress_task
from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender
from mga.distill.expand.answer import answer_jobs
from mga.distill.expand.blocks import block_sizes
from mga.distill.expand.local import description, run_local_pass
from mga.distill.expand.spec import ExpandSpec, Which
from mga.distill.expand.todo import open_streams, pass_work
from mga.distill.generate.protocol import Generator
from mga.distill.label.rows import Job

IN_FLIGHT = 2  # blocks per actor: the one it generates and the next
OBJECT_STORE_BYTES = 200 * 1024**2
# forwarded to workers; secrets (OPENAI_API_KEY) are not: a runtime_env is stored and shown by the cluster
_WORKER_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENAI_BASE_URL")

Block = list[tuple[str, Job]]


class ModelWorker:
    """One tool model on one actor: the rows of the blocks of one pass. The model loads in the first call, so
    a checkpoint that does not load fails that call with the toolkit's own message (a failed constructor
    would only say that the actor died)."""

    def __init__(self, spec: ExpandSpec, which: Which):
        self.spec, self.which = spec, which
        self.generator: Generator | None = None
        console.quiet = True  # the driver shows the pass's progress

    def answer(self, block: Block) -> tuple[float, float, list[dict[str, Any]]]:
        """(when it began, when it ended, the rows) of a block."""
        if self.generator is None:
            self.generator = self.spec.generator(self.which)
            torch = sys.modules.get("torch")  # loaded by a local model
            if torch is not None and not torch.cuda.is_available():
                torch.set_num_threads(1)  # one core per CPU actor: the pool, not threads, uses the cores
        began = time.time()
        rows = list(answer_jobs(self.which, self.spec, self.generator, block, len(block), self.which))
        return began, time.time(), rows


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


def pass_workers(asked: int | None, backend: str) -> int:
    """Actors for a pass: `asked`, or one per GPU (vLLM) or CPU of the cluster; an error when the cluster
    cannot place them all, since a block given to an actor that never starts would wait forever."""
    import ray

    resource = "GPU" if backend == "vllm" else "CPU"
    have = int(ray.cluster_resources().get(resource, 0))
    if have < (asked or 1):
        raise MgaError(f"--workers {asked or 1} with --backend {backend}: the Ray cluster has {have} {resource}(s), "
                       f"and each worker needs one")
    return asked or have


def _failure(e: Exception, which: Which, written: int) -> MgaError:
    """A worker's failure as one error: the worker's own message for a user mistake, else Ray's account."""
    cause = getattr(e, "cause", None)
    said = str(cause) if isinstance(cause, MgaError) else re.sub(r"\x1b\[[0-9;]*m", "", f"{type(e).__name__}: {e}")
    return MgaError(f"expand (ray): a {which} worker failed: {said}\n{written} rows of this pass were written and "
                    "are kept; a rerun sends only the rest")


def _pass(which: Which, spec: ExpandSpec, jobs: Iterator[tuple[str, Job]], todo: int, stream: Path,
          workers: int) -> dict[str, Any]:
    """Answer `todo` jobs on `workers` actors, appending each block's rows to `stream`; the pass's timings."""
    import ray

    begun = time.time()
    sizes = block_sizes(todo, workers, spec.batch_size)
    workers = min(workers, len(sizes))
    console.print(f"expand (ray): {which}: {todo} to generate in {len(sizes)} blocks, {workers} workers",
                  markup=False)
    resources = {"num_cpus": 1, **({"num_gpus": 1} if spec.backend(which) == "vllm" else {})}
    actors = [ray.remote(**resources)(ModelWorker).remote(spec, which) for _ in range(workers)]
    blocks = (list(islice(jobs, size)) for size in sizes)
    pending: dict[Any, Any] = {}

    def give(actor: Any) -> None:
        block = next(blocks, None)
        if block:
            pending[actor.answer.remote(block)] = actor

    first = last = None
    written = 0
    try:
        for actor in actors * IN_FLIGHT:
            give(actor)
        with JsonlAppender(stream) as out, progress_task(description(which, spec), todo) as advance:
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(ready)
                try:
                    began, ended, rows = ray.get(ready)
                except ray.exceptions.RayError as e:
                    raise _failure(e, which, written) from None
                give(actor)
                for row in rows:
                    out.write(row)
                written += len(rows)
                advance(len(rows))
                first, last = min(first or began, began), max(last or ended, ended)
    finally:
        for actor in actors:
            ray.kill(actor)
    now = time.time()
    first, last = first or now, last or now
    return {"on": "ray", "workers": workers, "startup_s": round(first - begun, 3),
            "generate_s": round(last - first, 3), "wall_s": round(now - begun, 3)}


def run_on_ray(
    work_dir: Path, spec: ExpandSpec, *, workers: int | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Generate the missing pairs rows, then the missing rewrite rows, of work_dir's chunks on Ray actors.

    A pass whose tool model is served by an endpoint (`openai` backend) runs in the driver, as the local
    executor runs it: the server does the work and one async client keeps it busy, so actors would add only
    their start-up. Returns per pass `wall_s`, and for a Ray pass `startup_s` until an actor began its first
    block (actors, imports, model loading) and `generate_s` from then to its last row (where throughput
    scales with workers). Ray is started only when a pass needs it."""
    timings: dict[str, Any] = {"workers": 0}
    started = False
    try:
        for which in ("pairs", "rewrite"):
            begun = time.time()
            if spec.backend(which) == "openai":
                run_local_pass(work_dir, spec, which)
                timings[which] = {"on": "driver", "wall_s": round(time.time() - begun, 3)}
                continue
            with open_streams(work_dir) as (pairs, rewrites):
                work = pass_work(which, work_dir, spec, pairs, rewrites)
                if work is None:
                    continue
                todo, jobs, stream = work
                started = started or start_ray(ray_address, workers or os.cpu_count() or 1)
                n = pass_workers(workers, spec.backend(which))
                timings[which] = _pass(which, spec, jobs, todo, stream.stream, n)
                timings["workers"] = max(timings["workers"], timings[which]["workers"])
    finally:
        if started:
            import ray

            ray.shutdown()
    return timings
