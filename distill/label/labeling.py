"""Stage 1 (genre-audience pairs per chunk) and stage 2 (one rewrite per chunk and pair) as file -> file functions.

Both stream rows to the output as answers arrive (whole lines only) and resume by row key: a rerun skips rows
already written and, through the generator's request cache, pays for nothing twice. A request that fails is
written as a row with `status` and `reason`, never dropped; at the end the output is rewritten in input order
so that an interrupted-and-resumed run and an uninterrupted one give the same file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.config import VARIANTS, GenerationParams
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender, finalize_stream, iter_rows, open_stream
from mga.distill.core.prompts import pairs_messages, rewrite_messages
from mga.distill.core.schema import OK, chunk_key, pairs_row, rewrite_key, rewrite_row
from mga.distill.generate.protocol import Completion, Generator, Request, Result
from mga.judge.pairs_check import parse_pairs

FAILED, TRUNCATED, EMPTY = "failed", "truncated", "empty"


class _Sized:
    """A lazily built iterable that still knows its length (for the progress bar)."""

    def __init__(self, items: Iterable[Any], length: int):
        self._items, self._length = items, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


def usage_fields(completion: Completion | None) -> dict[str, Any]:
    """Finish reason and token counts of a row (the row builders here and in `mga.distill.expand.ray_executor` share them)."""
    return {
        "finish_reason": completion.finish_reason if completion else None,
        "prompt_tokens": completion.prompt_tokens if completion else 0,
        "completion_tokens": completion.completion_tokens if completion else 0,
    }


def failure_reason(result: Result) -> str | None:
    """A failed request's reason, with the reasons of earlier attempts."""
    if result.error is None:
        return None
    if len(result.history) > 1:
        return f"{result.error} (after {result.attempts} attempts: {' | '.join(result.history)})"
    return result.error


def pairs_result_row(meta: dict[str, Any], result: Result, model: str) -> dict[str, Any]:
    """The stage-1 row of one answered request (a failed one keeps its reason and raw answer)."""
    completion = result.completion
    return pairs_row(meta, result.parsed if result.ok else [], status=OK if result.ok else FAILED,
                     reason=failure_reason(result), model=model, usage=usage_fields(completion),
                     raw_output=completion.text if completion else None, attempts=result.attempts)


def rewrite_result_row(meta: dict[str, Any], result: Result, variant: str, model: str, max_tokens: int) -> dict[str, Any]:
    """The stage-2 row of one answered request."""
    status, reason = rewrite_status(result, max_tokens)
    completion = result.completion
    return rewrite_row(meta, completion.text if completion else "", variant=variant, status=status, reason=reason,
                       model=model, usage=usage_fields(completion))


def _summary(stage: str, rows: list[dict[str, Any]], out_path: Path) -> None:
    counts = Counter(row.get("status") for row in rows)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: kv[0] != OK))
    console.print(f"{stage}: {len(rows)} rows ({parts}) -> {out_path}", markup=False, highlight=False)


# ---- stage 1 -------------------------------------------------------------------------------------------------


def _read_chunks(path: Path) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, row in enumerate(iter_rows(path), 1):
        meta = row.get("meta")
        if not isinstance(meta, dict) or "raw_text" not in meta or "docid" not in meta:
            raise MgaError(
                f"{path}: row {number} has no meta.raw_text/meta.docid: not a chunks file "
                "(give a corpus with a `text` field to `mga label --stage pairs` and it is chunked first)"
            )
        meta.setdefault("chunk_id", 0)
        if not isinstance(meta["raw_text"], str) or not meta["raw_text"].strip():
            console.print(f"warning: {path.name}: row {number} has an empty meta.raw_text, skipped", markup=False)
            continue
        if (k := chunk_key(row)) not in seen:
            seen.add(k)
            chunks.append(row)
    return chunks


def label_pairs(
    chunks_path: Path,
    out_path: Path,
    generator: Generator,
    *,
    language: str = "en",
    num_pairs: int = 5,
    params: GenerationParams,
    max_validation_attempts: int = 3,
) -> Path:
    """Stage 1: `num_pairs` (genre, audience) pairs per chunk, checked by `parse_pairs`, retried if invalid."""
    chunks_path, out_path = Path(chunks_path), Path(out_path)
    chunks = _read_chunks(chunks_path)
    stream, done = open_stream(out_path, chunk_key)
    todo = {chunk_key(c): c for c in chunks if chunk_key(c) not in done}
    requests = _Sized(
        (Request(k, pairs_messages(c["meta"]["raw_text"], language, num_pairs), params) for k, c in todo.items()),
        len(todo),
    )
    if done:
        console.print(f"stage 1: resuming, {len(done)} chunks already labeled, {len(todo)} to go", markup=False)

    def validate(completion: Completion) -> tuple[Any, str | None]:
        return parse_pairs(completion.text, num_pairs)

    with JsonlAppender(stream) as out:
        for result in generator.run(
            requests, validate=validate, max_attempts=max_validation_attempts, description="stage 1: pairs"
        ):
            out.write(pairs_result_row(todo[result.request.key]["meta"], result, generator.model_name))
    rows = finalize_stream(out_path, stream, [chunk_key(c) for c in chunks], chunk_key)
    _summary("stage 1 pairs", rows, out_path)
    return out_path


# ---- stage 2 -------------------------------------------------------------------------------------------------


def rewrite_status(result: Result, max_tokens: int) -> tuple[str, str | None]:
    """(status, reason) of a rewrite: ok, failed, empty, or truncated at max_tokens (marked, never dropped)."""
    completion = result.completion
    if completion is None:
        return FAILED, result.error
    if not completion.text.strip():
        return EMPTY, f"the teacher returned no text (finish_reason={completion.finish_reason})"
    if completion.finish_reason == "length":
        return TRUNCATED, f"the answer hit max_tokens={max_tokens} and was cut off"
    return OK, None


def not_empty(completion: Completion) -> tuple[Any, str | None]:
    return (None, None) if completion.text.strip() else (None, "empty answer")


def label_rewrites(
    pairs_path: Path,
    out_path: Path,
    generator: Generator,
    *,
    language: str = "en",
    variant: str = "base",
    params: GenerationParams,
    max_attempts: int = 2,
) -> Path:
    """Stage 2: one rewrite per (ok chunk, pair) with the `variant` prompt; empty answers are asked again
    (`max_attempts` in all), then kept and marked like truncated ones (`status` empty / truncated)."""
    if variant not in VARIANTS:
        raise MgaError(f"unknown prompt variant '{variant}' (choose {', '.join(VARIANTS)})")
    pairs_path, out_path = Path(pairs_path), Path(out_path)
    jobs: dict[str, dict[str, Any]] = {}
    skipped = 0
    for number, row in enumerate(iter_rows(pairs_path), 1):
        if "pairs" not in row or not isinstance(row.get("meta"), dict) or "raw_text" not in row["meta"]:
            raise MgaError(f"{pairs_path}: row {number} has no `pairs`/meta.raw_text: not a stage-1 pairs file")
        if row.get("status", OK) != OK:
            skipped += 1
            continue
        for pair_id, pair in enumerate(row["pairs"]):
            meta = {**row["meta"], "genre": pair["genre"], "audience": pair["audience"], "pair_id": pair_id}
            jobs.setdefault(rewrite_key({"meta": meta, "variant": variant}), meta)
    if skipped:
        console.print(f"stage 2: {skipped} chunks whose pairs failed are not rewritten", markup=False)
    stream, done = open_stream(out_path, rewrite_key)
    todo = {k: meta for k, meta in jobs.items() if k not in done}
    requests = _Sized(
        (
            Request(k, rewrite_messages(m["raw_text"], m["genre"], m["audience"], variant, language), params)
            for k, m in todo.items()
        ),
        len(todo),
    )
    if done:
        console.print(f"stage 2: resuming, {len(done)} rewrites already written, {len(todo)} to go", markup=False)
    with JsonlAppender(stream) as out:
        for result in generator.run(
            requests, validate=not_empty, max_attempts=max_attempts, description=f"stage 2: rewrite ({variant})"
        ):
            out.write(rewrite_result_row(todo[result.request.key], result, variant, generator.model_name, params.max_tokens))
    rows = finalize_stream(out_path, stream, list(jobs), rewrite_key)
    _summary(f"stage 2 rewrites ({variant})", rows, out_path)
    return out_path
