"""What is done and what is left in a shard, read from its files: one definition for both executors and cleaning.

A row is reused only if it was made from the current input by the current prompt, parameters and model. The
streams are indexed by `<row key>@<digest of what produced it>` (`Job.digest`, kept in every row), and a
chunk or a pair has its row only when one with its current digest exists. A changed document, prompt
variant, temperature or retrained checkpoint therefore redoes exactly its rows; rows made otherwise stay in
the stream unused, counted as stale. Lookups go through on-disk indexes, so a resumed run sends exactly the
missing requests with memory bounded whatever the shard's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.diskindex import RowIndex
from mga.distill.core.io import iter_rows
from mga.distill.core.schema import chunk_key, rewrite_jobs, rewrite_key
from mga.distill.expand.spec import ExpandSpec, Which
from mga.distill.label.rows import Job

INDEX = "content-index"


def content_key(key: str, digest: str | None) -> str:
    return f"{key}@{digest}"


def _pairs_row_key(row: dict[str, Any]) -> str:
    return content_key(chunk_key(row), row.get("digest"))


def _rewrite_row_key(row: dict[str, Any]) -> str:
    return content_key(rewrite_key(row), row.get("digest"))


@contextmanager
def open_streams(work_dir: Path) -> Iterator[tuple[RowIndex, RowIndex]]:
    """The shard's pairs and rewrite streams, indexed by content key."""
    with (RowIndex(Path(work_dir) / "pairs.jsonl", _pairs_row_key, INDEX) as pairs,
          RowIndex(Path(work_dir) / "rewrites.jsonl", _rewrite_row_key, INDEX) as rewrites):
        yield pairs, rewrites


def chunk_jobs(chunks_path: Path, spec: ExpandSpec) -> Iterator[tuple[str, Job]]:
    """(chunk key, stage-1 job) of every chunk, in chunk order."""
    for chunk in iter_rows(chunks_path):
        yield chunk_key(chunk), spec.pairs_job(chunk["meta"])


def current_pairs(chunks_path: Path, spec: ExpandSpec,
                  pairs: RowIndex) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(chunk, its current pairs row or None), in chunk order; the row carries the chunk's meta of this run."""
    for chunk in iter_rows(chunks_path):
        row = pairs.get(content_key(chunk_key(chunk), spec.pairs_job(chunk["meta"]).digest))
        yield chunk, (None if row is None else {**row, "meta": chunk["meta"]})


def pair_jobs(prow: dict[str, Any], spec: ExpandSpec) -> Iterator[tuple[str, Job]]:
    """(rewrite key, stage-2 job) of each pair of a current ok pairs row, in pair order."""
    for key, meta in rewrite_jobs(prow, spec.variant):
        yield key, spec.rewrite_job(meta)


def pairs_status(chunks_path: Path, spec: ExpandSpec, pairs: RowIndex) -> Iterator[tuple[str, Job, bool]]:
    """(chunk key, job, whether a current pairs row exists) of every chunk."""
    return ((key, job, content_key(key, job.digest) in pairs) for key, job in chunk_jobs(chunks_path, spec))


def rewrites_status(chunks_path: Path, spec: ExpandSpec, pairs: RowIndex,
                    rewrites: RowIndex) -> Iterator[tuple[str, Job, bool]]:
    """(rewrite key, job, whether a current rewrite row exists) of every pair of a current pairs row."""
    for _, prow in current_pairs(chunks_path, spec, pairs):
        if prow is not None:
            yield from ((key, job, content_key(key, job.digest) in rewrites) for key, job in pair_jobs(prow, spec))


def job_status(which: Which, chunks_path: Path, spec: ExpandSpec, pairs: RowIndex,
               rewrites: RowIndex) -> Iterator[tuple[str, Job, bool]]:
    """The pass's (key, job, whether a current row exists)."""
    if which == "pairs":
        return pairs_status(chunks_path, spec, pairs)
    return rewrites_status(chunks_path, spec, pairs, rewrites)


def left_to_do(which: Which, chunks_path: Path, spec: ExpandSpec, pairs: RowIndex, rewrites: RowIndex) -> int:
    """How many of the pass's jobs have no current row; says first how many rows on disk are stale (made
    from another text, prompt, parameters or model, so not reused)."""
    jobs = todo = 0
    for _, _, done in job_status(which, chunks_path, spec, pairs, rewrites):
        jobs, todo = jobs + 1, todo + (not done)
    stale = len(pairs if which == "pairs" else rewrites) - (jobs - todo)
    if stale > 0:
        console.print(f"expand: {which}: {stale} row(s) on disk were made from another text, prompt, parameters "
                      "or model and are not reused", markup=False)
    return todo


def pass_work(which: Which, work_dir: Path, spec: ExpandSpec, pairs: RowIndex,
              rewrites: RowIndex) -> tuple[int, Iterator[tuple[str, Job]], RowIndex] | None:
    """What a pass of either executor has to do: how many jobs have no current row (counted by a scan first,
    so no model loads for nothing), those (key, job) lazily, and the stream their rows go to; None when
    nothing is left."""
    chunks_path = Path(work_dir) / "chunks.jsonl"
    todo = left_to_do(which, chunks_path, spec, pairs, rewrites)
    if not todo:
        return None
    jobs = ((key, job) for key, job, done in job_status(which, chunks_path, spec, pairs, rewrites) if not done)
    return todo, jobs, pairs if which == "pairs" else rewrites
