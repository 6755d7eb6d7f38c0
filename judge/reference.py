"""The bundled reference set: hand-written (genre, audience) pairs, rewrites and Limited Consistency scores.

One row per source document (data/reference/<lang>.jsonl):
    {"docid", "chunk_id", "source", "text", "pairs": [{"genre", "audience", "rewrite", "score": 1..5,
     "justification"}, ...]}   (optional: "license", "span")
Judges are calibrated against it and the offline quickstart trains on it, so it is converted here into the
pipeline's own row schemas (distill/schema.py): the stages then read it like any labeled run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, write_rows
from mga.distill.core.schema import OK, chunk_row, pair_meta, pairs_row, rewrite_row
from mga.judge.parse import verdict

MODEL = "reference"
_DOC_FIELDS = ("docid", "source", "text")
_PAIR_FIELDS = ("genre", "audience", "rewrite", "justification")


def default_reference_path(language: str = "en") -> Path:
    """The bundled reference set of a language (en, zh)."""
    from mga.data import data_path

    return data_path("reference", f"{language}.jsonl")


def _check_row(row: dict[str, Any], where: str) -> None:
    for field in _DOC_FIELDS:
        if not isinstance(row.get(field), str) or (field != "source" and not row[field].strip()):
            raise MgaError(f"{where}: '{field}' must be a non-empty string")
    chunk_id = row.get("chunk_id")
    if not isinstance(chunk_id, int) or isinstance(chunk_id, bool) or chunk_id < 0:
        raise MgaError(f"{where}: 'chunk_id' must be an integer >= 0, got {chunk_id!r}")
    pairs = row.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise MgaError(f"{where}: 'pairs' must be a non-empty list")
    for number, pair in enumerate(pairs, 1):
        at = f"{where}, pair {number}"
        if not isinstance(pair, dict):
            raise MgaError(f"{at}: must be an object with genre, audience, rewrite, score, justification")
        for field in _PAIR_FIELDS:
            if not isinstance(pair.get(field), str) or not pair[field].strip():
                raise MgaError(f"{at}: '{field}' must be a non-empty string")
        score = pair.get("score")
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise MgaError(f"{at}: 'score' must be an integer from 1 to 5, got {score!r}")


def load_reference(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a reference set; a bad row is an MgaError naming the row and the field."""
    path = Path(path)
    rows = []
    seen: dict[str, int] = {}
    for number, row in enumerate(iter_rows(path), 1):
        where = f"{path}: row {number}"
        _check_row(row, where)
        key = f"{row['docid']}#{row['chunk_id']}"
        if key in seen:
            raise MgaError(f"{where}: docid '{row['docid']}' chunk {row['chunk_id']} repeats row {seen[key]}")
        seen[key] = number
        rows.append(row)
    if not rows:
        raise MgaError(f"{path}: the reference set is empty")
    return rows


def _tokens(text: str) -> int:
    """Whitespace token estimate: the reference set has no tokenizer behind it."""
    return len(text.split())


def _chunk(row: dict[str, Any]) -> dict[str, Any]:
    return chunk_row(row["docid"], row["chunk_id"], row["text"], row["source"])


def reference_chunk_rows(path: str | Path) -> list[dict[str, Any]]:
    """Chunk rows (the input of stage 1) of the reference originals."""
    return [_chunk(row) for row in load_reference(path)]


def reference_pairs_rows(path: str | Path, model: str = MODEL) -> list[dict[str, Any]]:
    """Stage-1 rows: each original with its (genre, audience) pairs, as a teacher answer would be stored."""
    rows = []
    for row in load_reference(path):
        pairs = [{"genre": p["genre"], "audience": p["audience"]} for p in row["pairs"]]
        raw_output = json.dumps({"pairs": pairs}, ensure_ascii=False)
        usage = {"finish_reason": "stop", "prompt_tokens": _tokens(row["text"]), "completion_tokens": _tokens(raw_output)}
        rows.append(pairs_row(_chunk(row)["meta"], pairs, status=OK, reason=None, model=model, usage=usage,
                              raw_output=raw_output))
    return rows


def _rewrites(rows: list[dict[str, Any]], variant: str, model: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for row in rows:
        meta = _chunk(row)["meta"]
        for pair_id, pair in enumerate(row["pairs"]):
            usage = {"finish_reason": "stop", "completion_tokens": _tokens(pair["rewrite"]),
                     "prompt_tokens": _tokens(row["text"]) + _tokens(pair["genre"]) + _tokens(pair["audience"])}
            rewrite = rewrite_row(pair_meta(meta, pair_id, pair),
                                  pair["rewrite"], variant=variant, status=OK, reason=None, model=model, usage=usage)
            out.append((rewrite, pair))
    return out


def reference_rewrite_rows(path: str | Path, variant: str = "base", model: str = MODEL) -> list[dict[str, Any]]:
    """Stage-2 rows: one per (original, pair), the hand-written rewrite as `content_split`."""
    return [rewrite for rewrite, _ in _rewrites(load_reference(path), variant, model)]


def reference_judged_rows(path: str | Path, variant: str = "base") -> list[dict[str, Any]]:
    """Judged rows: the stage-2 rows plus the reference score and its justification as the verdict."""
    return [
        {**rewrite, "judge": verdict(pair["score"], pair["justification"], MODEL, MODEL)}
        for rewrite, pair in _rewrites(load_reference(path), variant, MODEL)
    ]


def write_reference_labels(path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write the reference set as a labeled run: chunks, pairs, base rewrites and their judged rows."""
    out_dir = Path(out_dir)
    load_reference(path)  # fail before writing anything
    files = {
        "chunks": (out_dir / "chunks.jsonl", reference_chunk_rows(path)),
        "pairs": (out_dir / "pairs.jsonl", reference_pairs_rows(path)),
        "rewrites": (out_dir / "rewrites.base.jsonl", reference_rewrite_rows(path)),
        "judged": (out_dir / "judged.base.jsonl", reference_judged_rows(path)),
    }
    return {name: write_rows(file, rows) for name, (file, rows) in files.items()}

