"""Documents split once into `train` (teacher labels become SFT data), `eval` (never trained on: teacher and
every SLM answer the same prompts there, which gives Table 1) and `pool` (prompts the SLMs answer to grow
the SFT data, the paper's iterative filtering). Split by document, so no chunk of an eval document trains."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json, write_rows

PARTS = ("train", "eval", "pool")


def docid(row: dict[str, Any]) -> str:
    return str(row["meta"]["docid"])


def only_docs(rows: Iterable[dict[str, Any]], docids: set[str]) -> list[dict[str, Any]]:
    return [r for r in rows if docid(r) in docids]


def split_documents(kept_pairs: Path, out: Path, *, heldout_fraction: float, pool_fraction: float, seed: int) -> dict[str, int]:
    """Seeded split of the documents that have valid pairs; at least one eval document (and one pool
    document when `pool_fraction` > 0)."""
    docids = sorted({docid(r) for r in read_rows(kept_pairs)})
    if len(docids) < 3:
        raise MgaError(f"only {len(docids)} documents have valid pairs: need at least 3 (train, eval, pool)")
    random.Random(seed).shuffle(docids)
    n_eval = max(1, round(len(docids) * heldout_fraction))
    n_pool = max(1, round(len(docids) * pool_fraction)) if pool_fraction > 0 else 0
    split = {"eval": docids[:n_eval], "pool": docids[n_eval:n_eval + n_pool], "train": docids[n_eval + n_pool:]}
    write_json(out, split)
    return {k: len(v) for k, v in split.items()}


def read_split(path: Path) -> dict[str, set[str]]:
    data = json.loads(Path(path).read_text())
    return {part: set(data.get(part, [])) for part in PARTS}


def write_parts(rows_path: Path, split_path: Path, outs: dict[str, Path]) -> dict[str, int]:
    """Write the rows of `rows_path` belonging to each named part of the split to its own file."""
    rows, split = read_rows(rows_path), read_split(split_path)
    for part, out in outs.items():
        write_rows(out, only_docs(rows, split[part]))
    return {"rows_out": sum(len(read_rows(out)) for out in outs.values())}
