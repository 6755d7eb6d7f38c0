"""The local executor of the expand step: two streaming passes over the shard's chunks.

Pass 1 sends one SLM-1 request per chunk that has no pairs row yet; pass 2 loads SLM-2 and sends one
request per (chunk, pair) that has no rewrite row yet. Requests are produced lazily from `chunks.jsonl`
as the generator asks for them, rows are appended to `pairs.jsonl` / `rewrites.jsonl` as answers arrive,
and what is already done is looked up by content in on-disk indexes of those files (`todo`). So memory holds
the requests in flight, not the shard, and a killed run resumes with no row lost or written twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mga.distill.core.console import console
from mga.distill.core.diskindex import RowIndex
from mga.distill.core.io import JsonlAppender
from mga.distill.expand.spec import REWRITE_ATTEMPTS, ExpandSpec, Which
from mga.distill.expand.todo import job_status, left_to_do, missing, open_streams
from mga.distill.generate.protocol import Request, Sized
from mga.distill.label.rows import (
    Job,
    pairs_result_row,
    pairs_validator,
    rewrite_request,
    rewrite_result_row,
)


def _pairs_pass(work_dir: Path, spec: ExpandSpec, pairs: RowIndex, rewrites: RowIndex) -> None:
    chunks_path = work_dir / "chunks.jsonl"
    todo = left_to_do("pairs", chunks_path, spec, pairs, rewrites)  # a scan, so no model loads for nothing
    if not todo:
        return
    generator = spec.generator("pairs", cache_path=work_dir / ".mga-cache.sqlite")
    model, params = generator.model_name, spec.params()
    in_flight: dict[str, Job] = {}

    def requests() -> Iterator[Request]:
        for key, job in missing(job_status("pairs", chunks_path, spec, pairs, rewrites)):
            in_flight[key] = job
            yield Request(key, job.messages, params)

    with JsonlAppender(pairs.stream) as out:
        for result in generator.run(Sized(requests(), todo), validate=pairs_validator(spec.num_pairs),
                                    max_attempts=spec.max_validation_attempts, description="expand: pairs"):
            out.write(pairs_result_row(in_flight.pop(result.request.key), result, model))
    pairs.refresh()


def _rewrite_pass(work_dir: Path, spec: ExpandSpec, pairs: RowIndex, rewrites: RowIndex) -> None:
    chunks_path = work_dir / "chunks.jsonl"
    todo = left_to_do("rewrite", chunks_path, spec, pairs, rewrites)
    if not todo:
        return
    generator = spec.generator("rewrite", cache_path=work_dir / ".mga-cache.sqlite")
    model, params = generator.model_name, spec.params()
    in_flight: dict[str, Job] = {}

    def requests() -> Iterator[Request]:
        for key, job in missing(job_status("rewrite", chunks_path, spec, pairs, rewrites)):
            in_flight[key] = job
            yield rewrite_request(key, job, params, spec.language)

    with JsonlAppender(rewrites.stream) as out:
        for result in generator.run(Sized(requests(), todo), max_attempts=REWRITE_ATTEMPTS,
                                    description=f"expand: rewrite ({spec.variant})"):
            out.write(rewrite_result_row(in_flight.pop(result.request.key), result, spec.variant, model,
                                         spec.max_new_tokens))
    rewrites.refresh()


def run_local(work_dir: Path, spec: ExpandSpec) -> None:
    """Generate the missing pairs rows, then the missing rewrite rows, of the chunks in work_dir."""
    with open_streams(work_dir) as (pairs, rewrites):
        if len(pairs) or len(rewrites):
            console.print(f"expand: resuming, {len(pairs)} pairs rows and {len(rewrites)} rewrite rows on disk",
                          markup=False)
        _pairs_pass(work_dir, spec, pairs, rewrites)  # the pairs model is freed before the rewrite model loads
        _rewrite_pass(work_dir, spec, pairs, rewrites)


def run_local_pass(work_dir: Path, spec: ExpandSpec, which: Which) -> None:
    """One of the two passes (the Ray executor runs a pass served by an endpoint this way)."""
    with open_streams(work_dir) as (pairs, rewrites):
        (_pairs_pass if which == "pairs" else _rewrite_pass)(work_dir, spec, pairs, rewrites)
