"""`mga label`: teacher (or SLM) labels for stage 1 (pairs) and stage 2 (rewrites)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import OverwriteOpt, RecipeOpt, SetOpt, load_config
from mga.distill.core.errors import MgaError
from mga.distill.core.schema import TOOL_MODELS


def _is_chunks_file(path: Path) -> bool:
    """True for rows with meta.raw_text (chunks or pairs), False for a raw corpus (rows with `text`)."""
    from mga.distill.core.sources import first_row

    row = first_row(path) or {}
    return isinstance(row.get("meta"), dict) and "raw_text" in row["meta"]


def label(
    stage: Annotated[str, typer.Option(help="pairs (stage 1: 5 genre-audience pairs) or rewrite (stage 2).")],
    input: Annotated[Path, typer.Option(
        "--input", "-i", help="Documents (stage pairs: a file, folder or glob) or pairs file (stage rewrite).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .jsonl or .parquet (resumable).")],
    variant: Annotated[str, typer.Option(help="Rewrite prompt: base, strict or relaxed.")] = "base",
    teacher_model: Annotated[str | None, typer.Option(help="Local checkpoint to answer instead of an endpoint.")] = None,
    language: Annotated[str | None, typer.Option(help="Prompt set (a folder under data/prompts/); default: recipe.")] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1; repeat it for a pool of servers."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Served model name (teacher.model).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight (teacher.concurrency).")] = None,
    overwrite: OverwriteOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the requests, tokens, cost and time; send nothing.")] = False,
    latency: Annotated[float, typer.Option(help="Seconds per request assumed by --dry-run's wall time.")] = 2.0,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Label documents with the teacher over any OpenAI-compatible endpoint, or with a local SLM checkpoint.

    Resumable by content: a rerun reuses the rows whose document, prompt, parameters and model are
    unchanged, redoes the others, and sends no request it has an answer for."""
    from mga.distill.core.console import console
    from mga.distill.core.io import check_input, check_output, writable_folder
    from mga.distill.generate.accounting import Accounting
    from mga.distill.generate.budget import recorded_cost
    from mga.distill.generate.teacher import make_generator
    from mga.distill.label.labeling import label_pairs, label_rewrites

    if stage not in TOOL_MODELS:
        raise MgaError(f"--stage {stage!r}: choose pairs or rewrite")
    if stage == "pairs" and (input.is_dir() or any(c in str(input) for c in "*?[")):
        from mga.distill.core.sources import resolve

        resolve(input)  # documents in a folder, a glob or a saved dataset
    else:
        check_input(input)
    check_output(output, [input])
    cfg = load_config(recipe, set_, options={
        "--base-url": ("teacher.base_url", base_url), "--model": ("teacher.model", teacher_model or model),
        "--concurrency": ("teacher.concurrency", concurrency),
        "--teacher-model": ("teacher.backend", "transformers" if teacher_model else None),
        "--language": ("language", language),
    })
    teacher = cfg.teacher
    out_dir = output.parent
    cache_path = cfg.label.cache_path or out_dir / ".mga-cache.sqlite"
    if dry_run:
        _dry_run(stage, input, output, cfg, variant, cache_path, latency)
        return
    writable_folder(out_dir)  # before any request is paid for
    spent_before = recorded_cost(out_dir / "accounting.json")  # for teacher.max_budget_usd
    accounting = Accounting.for_teacher(teacher, path=out_dir / "accounting.json")
    check_output(cache_path, [input], what="request cache", rows=False)
    generator = make_generator(teacher, cache_path=cache_path, accounting=accounting, stage=f"label-{stage}",
                               spent_before=spent_before)
    try:
        if stage == "pairs":
            chunks = input
            if not _is_chunks_file(input):
                from mga.distill.label.chunk import chunk_corpus

                chunks = chunk_corpus(input, out_dir / f"{output.stem}.chunks.jsonl", cfg.corpus, seed=cfg.seed,
                                      language=cfg.language)
            label_pairs(
                chunks,
                output,
                generator,
                language=cfg.language,
                num_pairs=cfg.label.num_pairs,
                params=teacher.pairs,
                max_validation_attempts=cfg.label.max_validation_attempts,
                overwrite=overwrite,
            )
        else:
            label_rewrites(input, output, generator, language=cfg.language, variant=variant, params=teacher.rewrite,
                           max_attempts=cfg.label.max_validation_attempts, overwrite=overwrite)
    finally:
        if accounting.stages:
            accounting.write()
            console.print(accounting.table())


def _dry_run(stage: str, input: Path, output: Path, cfg, variant: str, cache_path: Path, latency: float) -> None:
    from mga.distill.core.console import console
    from mga.distill.generate.estimate import estimate_table
    from mga.distill.pipeline.dry_run import label_dry_run, print_notes

    chunks = stage == "pairs" and _is_chunks_file(input)
    estimates = label_dry_run(stage, input, output, cfg, variant=variant, chunks=chunks, cache_path=cache_path,
                              latency_s=latency)
    console.print(estimate_table(estimates, title=f"mga label --stage {stage} --dry-run: nothing was sent"))
    print_notes(estimates)
