"""The bundled reference set: hand-written (genre, audience) pairs, rewrites and Limited Consistency scores.

One row per source document (data/reference/<lang>.jsonl):
    {"docid", "chunk_id", "source", "text", "pairs": [{"genre", "audience", "rewrite", "score": 1..5,
     "justification"}, ...]}   (optional: "license", "span")
An optional sibling `<stem>.pairs.jsonl` (en.jsonl -> en.pairs.jsonl) holds stage-1 labels only, rows of the
same shape whose pairs are {"genre", "audience"}: stage 1 has many more documents to learn from than there
are hand-written rewrites. Its documents join the chunk and pairs rows; rewrites, judged rows and calibration
keep to the rows with rewrites. A docid appears in one of the two files only.
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
_STAGE1_FIELDS = ("genre", "audience")
PAIRS_SUFFIX = ".pairs.jsonl"


def default_reference_path(language: str = "en") -> Path:
    """The bundled reference set of a language (en, zh, ja)."""
    from mga.data import data_path

    return data_path("reference", f"{language}.jsonl")


def pairs_path(path: str | Path) -> Path:
    """The stage-1-only sibling of a reference set: `en.jsonl` -> `en.pairs.jsonl` (it need not exist)."""
    path = Path(path)
    return path.with_name(path.stem + PAIRS_SUFFIX)


def reference_files(path: str | Path) -> list[Path]:
    """The files a reference set is read from: the set and, when present, its pairs sibling."""
    sibling = pairs_path(path)
    return [Path(path), sibling] if sibling.is_file() else [Path(path)]


def _check_row(row: dict[str, Any], where: str, with_rewrites: bool = True) -> None:
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
        _check_pair(pair, f"{where}, pair {number}", with_rewrites)


def _check_pair(pair: Any, at: str, with_rewrites: bool) -> None:
    """A labelled pair (genre, audience, rewrite, score, justification), or a stage-1 pair (genre, audience
    and nothing else: a rewrite in the pairs file would silently never be used)."""
    if not isinstance(pair, dict):
        fields = "genre, audience, rewrite, score, justification" if with_rewrites else "genre and audience"
        raise MgaError(f"{at}: must be an object with {fields}")
    for field in _PAIR_FIELDS if with_rewrites else _STAGE1_FIELDS:
        if not isinstance(pair.get(field), str) or not pair[field].strip():
            raise MgaError(f"{at}: '{field}' must be a non-empty string")
    if not with_rewrites:
        extra = sorted(set(pair) - set(_STAGE1_FIELDS))
        if extra:
            raise MgaError(f"{at}: unexpected field '{extra[0]}' (a pairs file holds genre and audience only; "
                           "rows with rewrites belong in the reference set itself)")
        return
    score = pair.get("score")
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise MgaError(f"{at}: 'score' must be an integer from 1 to 5, got {score!r}")


def _load(path: Path, with_rewrites: bool) -> list[dict[str, Any]]:
    rows = []
    seen: dict[str, int] = {}
    for number, row in enumerate(iter_rows(path), 1):
        where = f"{path}: row {number}"
        _check_row(row, where, with_rewrites)
        key = f"{row['docid']}#{row['chunk_id']}"
        if key in seen:
            raise MgaError(f"{where}: docid '{row['docid']}' chunk {row['chunk_id']} repeats row {seen[key]}")
        seen[key] = number
        rows.append(row)
    if not rows:
        raise MgaError(f"{path}: the reference set is empty")
    return rows


def load_reference(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate the rows with rewrites; a bad row is an MgaError naming the row and the field."""
    return _load(Path(path), with_rewrites=True)


def _load_pairs(path: Path, labelled: set[str]) -> list[dict[str, Any]]:
    """The stage-1-only sibling of the set at `path` ([] when there is none); a docid of the set itself
    (`labelled`) is an error, since the two files would label the document twice."""
    sibling = pairs_path(path)
    if not sibling.is_file():
        return []
    rows = _load(sibling, with_rewrites=False)
    for number, row in enumerate(rows, 1):
        if row["docid"] in labelled:
            raise MgaError(f"{sibling}: row {number}: docid '{row['docid']}' is also in {path.name}; "
                           "keep each document in one of the two files")
    return rows


def load_reference_documents(path: str | Path) -> list[dict[str, Any]]:
    """Every document with stage-1 labels: the rows with rewrites, then those of the pairs sibling (validated
    like the set, pairs of genre and audience only)."""
    rows = load_reference(path)
    return rows + _load_pairs(Path(path), {row["docid"] for row in rows})


def reference_rewrite_docids(path: str | Path) -> set[str]:
    """Docids whose rows carry rewrites: the only documents that can have stage-2 labels and scores."""
    return {row["docid"] for row in load_reference(path)}


def _tokens(text: str) -> int:
    """Whitespace token estimate: the reference set has no tokenizer behind it."""
    return len(text.split())


def _chunk(row: dict[str, Any]) -> dict[str, Any]:
    return chunk_row(row["docid"], row["chunk_id"], row["text"], row["source"])


def reference_chunk_rows(path: str | Path) -> list[dict[str, Any]]:
    """Chunk rows (the input of stage 1) of the reference originals, the pairs sibling's included."""
    return [_chunk(row) for row in load_reference_documents(path)]


def reference_pairs_rows(path: str | Path, model: str = MODEL) -> list[dict[str, Any]]:
    """Stage-1 rows: each original with its (genre, audience) pairs, as a teacher answer would be stored
    (the pairs sibling's documents included)."""
    rows = []
    for row in load_reference_documents(path):
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
    """Write the reference set as a labeled run: chunks and pairs of every document, base rewrites and their
    judged rows of the documents with rewrites."""
    out_dir = Path(out_dir)
    load_reference_documents(path)  # fail before writing anything
    files = {
        "chunks": (out_dir / "chunks.jsonl", reference_chunk_rows(path)),
        "pairs": (out_dir / "pairs.jsonl", reference_pairs_rows(path)),
        "rewrites": (out_dir / "rewrites.base.jsonl", reference_rewrite_rows(path)),
        "judged": (out_dir / "judged.base.jsonl", reference_judged_rows(path)),
    }
    return {name: write_rows(file, rows) for name, (file, rows) in files.items()}

