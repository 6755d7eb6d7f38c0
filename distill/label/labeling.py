"""Stage 1 (genre-audience pairs per chunk) and stage 2 (one rewrite per chunk and pair) as file -> file functions.

Both stream rows to the output as answers arrive (whole lines only) and resume by content
(`mga.distill.core.resume`): a rerun keeps a row only if its input text, rendered prompt, generation
parameters and model are unchanged, redoes the others and, through the generator's request cache, pays for
nothing twice. A request that fails is written as a row with `status` and `reason`, never dropped (and asked
again by a rerun); every answer validation rejected is kept in the row's `rejected` list and in the
`<output>.rejected.jsonl` file. At the end the output is rewritten in input order so that an
interrupted-and-resumed run and an uninterrupted one give the same file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from mga.distill.core.config import MAX_VALIDATION_ATTEMPTS, VARIANTS, GenerationParams
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender, finalize_stream, iter_rows, write_rows
from mga.distill.core.reasons import count_reasons, reasons_line
from mga.distill.core.resume import resume_stream
from mga.distill.core.schema import OK, chunk_key, rewrite_jobs, rewrite_key
from mga.distill.generate.protocol import Generator, Sized
from mga.distill.generate.retry import gave_up
from mga.distill.label.rows import (
    FAILED,
    Job,
    pairs_job,
    pairs_request,
    pairs_result_row,
    pairs_validator,
    rewrite_job,
    rewrite_request,
    rewrite_result_row,
)


def _no_answer(row: dict[str, Any]) -> bool:
    """A row that failed on transient errors only (network, timeouts, 5xx, 429): a rerun asks again. Rows the
    teacher refused (a 400) or whose answers stayed invalid are final."""
    return row.get("status") == FAILED and gave_up(row.get("reason"))


def rejected_path(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.name.rsplit('.', 1)[0]}.rejected.jsonl")


def _write_rejected(out_path: Path, rows: list[dict[str, Any]], key) -> None:
    """Every rejected answer of the final rows, one line each with its reason (rewritten, never appended)."""
    lines = [{"key": key(row), "meta": row["meta"], **entry, "model": row.get("model")}
             for row in rows for entry in row.get("rejected") or []]
    path = rejected_path(out_path)
    if lines or path.exists():
        write_rows(path, lines)


def _resume(stage: str, out_path: Path, key, jobs: dict[str, Job], overwrite: bool):
    """Resume `out_path` against `jobs`; says what is reused."""
    resumed = resume_stream(out_path, key, {k: j.digest for k, j in jobs.items()},
                            {k: j.source_digest for k, j in jobs.items()}, overwrite=overwrite, retry=_no_answer)
    if resumed.done or resumed.changed or resumed.gone:
        console.print(f"{stage}: resuming, {len(resumed.done)} rows reused, {len(jobs) - len(resumed.done)} to go"
                      f"{resumed.describe()}", markup=False)
    return resumed


def _summary(stage: str, rows: list[dict[str, Any]], out_path: Path) -> None:
    """The stage's line: rows by status, then why rows failed and why answers were rejected, by kind."""
    counts = Counter(row.get("status") for row in rows)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: kv[0] != OK))
    console.print(f"{stage}: {len(rows)} rows ({parts}) -> {out_path}", markup=False, highlight=False)
    failed = count_reasons(row.get("reason") for row in rows if row.get("status") != OK)
    rejected = count_reasons(entry.get("reason") for row in rows for entry in row.get("rejected") or [])
    for what, reasons in (("not ok", failed), ("answers rejected", rejected)):
        if reasons:
            console.print(f"  {what}: {reasons_line(reasons)}", markup=False, highlight=False, soft_wrap=True)


# ---- stage 1 -------------------------------------------------------------------------------------------------


def _read_chunks(path: Path) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    seen: dict[str, tuple[int, str]] = {}
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
            seen[k] = (number, meta["raw_text"])
            chunks.append(row)
        elif seen[k][1] != meta["raw_text"]:
            raise MgaError(f"{path}: duplicate document id '{meta['docid']}' (chunk {k} at rows {seen[k][0]} and "
                           f"{number} with different text): document ids must be unique")
    return chunks


def label_pairs(
    chunks_path: Path,
    out_path: Path,
    generator: Generator,
    *,
    language: str = "en",
    num_pairs: int = 5,
    params: GenerationParams,
    max_validation_attempts: int = MAX_VALIDATION_ATTEMPTS,
    overwrite: bool = False,
) -> Path:
    """Stage 1: `num_pairs` (genre, audience) pairs per chunk, checked by `parse_pairs`, retried if invalid."""
    chunks_path, out_path = Path(chunks_path), Path(out_path)
    chunks = _read_chunks(chunks_path)
    if not chunks:
        raise MgaError(f"{chunks_path}: no chunk with text to label")
    model = generator.model_name  # in the rows; the jobs' digests hold its identity (a local model's bytes)
    jobs = {chunk_key(c): pairs_job(c["meta"], language, num_pairs, params, generator.model_id) for c in chunks}
    resumed = _resume("stage 1", out_path, chunk_key, jobs, overwrite)
    todo = {k: j for k, j in jobs.items() if k not in resumed.done}
    requests = Sized((pairs_request(k, j, params, num_pairs) for k, j in todo.items()), len(todo))

    with JsonlAppender(resumed.stream) as out:
        for result in generator.run(
            requests, validate=pairs_validator(num_pairs), max_attempts=max_validation_attempts,
            description="stage 1: pairs",
        ):
            out.write(pairs_result_row(todo[result.request.key], result, model))
    stream = resumed.stream
    rows = finalize_stream(out_path, stream, list(jobs), chunk_key)
    _write_rejected(out_path, rows, chunk_key)
    _summary("stage 1 pairs", rows, out_path)
    return out_path


# ---- stage 2 -------------------------------------------------------------------------------------------------


def label_rewrites(
    pairs_path: Path,
    out_path: Path,
    generator: Generator,
    *,
    language: str = "en",
    variant: str = "base",
    params: GenerationParams,
    max_attempts: int = MAX_VALIDATION_ATTEMPTS,
    overwrite: bool = False,
) -> Path:
    """Stage 2: one rewrite per (ok chunk, pair) with the `variant` prompt. Answers that are not a rewrite
    (`mga.distill.label.answer_checks`) are asked again (`max_attempts` in all), then kept and marked
    (`status` empty / rejected), like truncated ones (`truncated`)."""
    if variant not in VARIANTS:
        raise MgaError(f"unknown prompt variant '{variant}' (choose {', '.join(VARIANTS)})")
    pairs_path, out_path = Path(pairs_path), Path(out_path)
    metas: dict[str, dict[str, Any]] = {}
    skipped = 0
    for number, row in enumerate(iter_rows(pairs_path), 1):
        if "pairs" not in row or not isinstance(row.get("meta"), dict) or "raw_text" not in row["meta"]:
            raise MgaError(f"{pairs_path}: row {number} has no `pairs`/meta.raw_text: not a stage-1 pairs file")
        if row.get("status", OK) != OK:
            skipped += 1
            continue
        if not isinstance(row["pairs"], list) or not all(
            isinstance(p, dict) and isinstance(p.get("genre"), str) and isinstance(p.get("audience"), str)
            for p in row["pairs"]
        ):
            raise MgaError(f"{pairs_path}: row {number}: `pairs` must be a list of {{genre, audience}} strings")
        for key, meta in rewrite_jobs({**row, "status": OK}, variant):
            metas.setdefault(key, meta)
    if skipped:
        console.print(f"stage 2: {skipped} chunks whose pairs failed are not rewritten", markup=False)
    if not metas and not skipped:
        raise MgaError(f"{pairs_path}: no rows: nothing to rewrite")
    model = generator.model_name
    jobs = {k: rewrite_job(meta, variant, language, params, generator.model_id) for k, meta in metas.items()}
    resumed = _resume("stage 2", out_path, rewrite_key, jobs, overwrite)
    todo = {k: j for k, j in jobs.items() if k not in resumed.done}
    requests = Sized((rewrite_request(k, j, params, language) for k, j in todo.items()), len(todo))
    with JsonlAppender(resumed.stream) as out:
        for result in generator.run(requests, max_attempts=max_attempts, description=f"stage 2: rewrite ({variant})"):
            out.write(rewrite_result_row(todo[result.request.key], result, variant, model, params.max_tokens))
    stream = resumed.stream
    rows = finalize_stream(out_path, stream, list(jobs), rewrite_key)
    _write_rejected(out_path, rows, rewrite_key)
    _summary(f"stage 2 rewrites ({variant})", rows, out_path)
    return out_path
