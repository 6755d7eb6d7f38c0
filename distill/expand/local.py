"""The local executor of the expand step: two streaming passes over the shard's chunks.

Pass 1 sends one SLM-1 request per chunk that has no pairs row yet; pass 2 loads SLM-2 and sends one
request per (chunk, pair) that has no rewrite row yet. Requests are produced lazily from `chunks.jsonl`
as the generator asks for them, rows are appended to `pairs.jsonl` / `rewrites.jsonl` as answers arrive,
and what is already done is looked up by content in on-disk indexes of those files (`todo`). So memory holds
the requests in flight, not the shard, and a killed run resumes with no row lost or written twice.
"""

from __future__ import annotations

from pathlib import Path

from mga.distill.core.console import console
from mga.distill.core.diskindex import RowIndex
from mga.distill.core.io import JsonlAppender
from mga.distill.expand.answer import answer_jobs
from mga.distill.expand.spec import ExpandSpec, Which
from mga.distill.expand.todo import open_streams, pass_work


def description(which: Which, spec: ExpandSpec) -> str:
    return "expand: pairs" if which == "pairs" else f"expand: rewrite ({spec.variant})"


def _pass(work_dir: Path, spec: ExpandSpec, which: Which, pairs: RowIndex, rewrites: RowIndex) -> None:
    work = pass_work(which, work_dir, spec, pairs, rewrites)
    if work is None:
        return
    todo, jobs, stream = work
    generator = spec.generator(which, cache_path=work_dir / ".mga-cache.sqlite")
    with JsonlAppender(stream.stream) as out:
        for row in answer_jobs(which, spec, generator, jobs, todo, description(which, spec)):
            out.write(row)
    stream.refresh()


def run_local(work_dir: Path, spec: ExpandSpec) -> None:
    """Generate the missing pairs rows, then the missing rewrite rows, of the chunks in work_dir."""
    with open_streams(work_dir) as (pairs, rewrites):
        if len(pairs) or len(rewrites):
            console.print(f"expand: resuming, {len(pairs)} pairs rows and {len(rewrites)} rewrite rows on disk",
                          markup=False)
        _pass(work_dir, spec, "pairs", pairs, rewrites)  # the pairs model is freed before the rewrite model loads
        _pass(work_dir, spec, "rewrite", pairs, rewrites)


def run_local_pass(work_dir: Path, spec: ExpandSpec, which: Which) -> None:
    """One of the two passes (the Ray executor runs a pass served by an endpoint this way)."""
    with open_streams(work_dir) as (pairs, rewrites):
        _pass(work_dir, spec, which, pairs, rewrites)
