"""What is left to generate in a shard, read from its files: one definition for both executors.

A chunk needs a pairs row until `pairs.jsonl` has one; each pair of an ok pairs row needs a rewrite row until
`rewrites.jsonl` has one. Looked up in on-disk indexes, so a resumed run sends exactly the missing requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.diskindex import RowIndex
from mga.distill.core.io import iter_rows
from mga.distill.core.schema import chunk_key, rewrite_jobs


def missing_pairs(chunks_path: Path, pairs: RowIndex) -> Iterator[dict[str, Any]]:
    """The chunks without a pairs row, in chunk order."""
    return (chunk for chunk in iter_rows(chunks_path) if chunk_key(chunk) not in pairs)


def missing_rewrites(chunks_path: Path, variant: str, pairs: RowIndex,
                     rewrites: RowIndex) -> Iterator[tuple[str, dict[str, Any]]]:
    """(rewrite key, rewrite meta) of every pair without a rewrite row, in chunk and pair order."""
    for chunk in iter_rows(chunks_path):
        prow = pairs.get(chunk_key(chunk))
        yield from ((key, meta) for key, meta in rewrite_jobs(prow or {}, variant) if key not in rewrites)
