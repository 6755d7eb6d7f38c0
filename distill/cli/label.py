"""`mga label`: teacher (or SLM) labels for stage 1 (pairs) and stage 2 (rewrites)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import RecipeOpt, SetOpt, load_config
from mga.distill.core.errors import MgaError
from mga.distill.core.schema import TOOL_MODELS


def _is_chunks_file(path: Path) -> bool:
    """True for rows with meta.raw_text (chunks or pairs), False for a raw corpus (rows with `text`)."""
    from mga.distill.core.io import iter_rows

    if path.suffix == ".parquet":
        row = next(iter_rows(path), {})
        return isinstance(row.get("meta"), dict) and "raw_text" in row["meta"]
    if not path.exists():
        raise MgaError(f"{path}: input file not found")
    with open(path, "rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(row, dict):
                return isinstance(row.get("meta"), dict) and "raw_text" in row["meta"]
    return False


def label(
    stage: Annotated[str, typer.Option(help="pairs (stage 1: 5 genre-audience pairs) or rewrite (stage 2).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Documents (stage pairs) or pairs file (stage rewrite).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .jsonl or .parquet (resumable).")],
    variant: Annotated[str, typer.Option(help="Rewrite prompt: base, strict or relaxed.")] = "base",
    teacher_model: Annotated[str | None, typer.Option(help="Local checkpoint to answer instead of an endpoint.")] = None,
    language: Annotated[str | None, typer.Option(help="Prompt set (a folder under data/prompts/); default: recipe.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")] = None,
    model: Annotated[str | None, typer.Option(help="Served model name (teacher.model).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight (teacher.concurrency).")] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Label documents with the teacher over any OpenAI-compatible endpoint, or with a local SLM checkpoint."""
    from mga.distill.core.console import console
    from mga.distill.generate.accounting import Accounting
    from mga.distill.generate.teacher import make_generator
    from mga.distill.label.labeling import label_pairs, label_rewrites

    if stage not in TOOL_MODELS:
        raise MgaError(f"--stage {stage!r}: choose pairs or rewrite")
    cfg = load_config(recipe, set_)
    teacher = cfg.teacher
    try:
        if teacher_model is not None:
            teacher.backend, teacher.model = "transformers", teacher_model
        if base_url is not None:
            teacher.base_url = base_url
        if model is not None:
            teacher.model = model
        if concurrency is not None:
            teacher.concurrency = concurrency
    except ValueError as e:  # pydantic validates on assignment
        raise MgaError(f"teacher option: {str(e).splitlines()[-1].strip()}") from None
    language = language or cfg.language
    out_dir = output.parent
    accounting = Accounting.for_teacher(teacher)
    generator = make_generator(
        teacher,
        cache_path=cfg.label.cache_path or out_dir / ".mga-cache.sqlite",
        accounting=accounting,
        stage=f"label-{stage}",
    )
    try:
        if stage == "pairs":
            chunks = input
            if not _is_chunks_file(input):
                from mga.distill.label.chunk import chunk_corpus

                chunks = chunk_corpus(input, out_dir / f"{output.stem}.chunks.jsonl", cfg.corpus, seed=cfg.seed)
            label_pairs(
                chunks,
                output,
                generator,
                language=language,
                num_pairs=cfg.label.num_pairs,
                params=teacher.pairs,
                max_validation_attempts=cfg.label.max_validation_attempts,
            )
        else:
            label_rewrites(input, output, generator, language=language, variant=variant, params=teacher.rewrite)
    finally:
        if accounting.stages:
            accounting.write(out_dir / "accounting.json")
            console.print(accounting.table())
