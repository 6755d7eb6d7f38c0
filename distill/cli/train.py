"""`mga train`: SFT of one tool model per stage with TRL (+ PEFT LoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import RecipeOpt, SetOpt, load_config


def train(
    stage: Annotated[str, typer.Option(help="pairs (SLM-1) or rewrite (SLM-2).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Kept (filtered) labels, .jsonl or .parquet.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for checkpoint, split ids, loss curve.")],
    merge: Annotated[
        bool | None, typer.Option("--merge/--no-merge", help="Merge LoRA into a full checkpoint (default: recipe).")
    ] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune the student on kept labels (assistant-only loss, EOS learned); full or LoRA.

    The SFT data (chat messages with the teacher's prompts, split by document) goes to OUTPUT/data; the
    checkpoint to use downstream is OUTPUT/model (OUTPUT/adapter for LoRA with --no-merge). INPUT may also be
    a reference set (data/reference/<lang>.jsonl): its rewrites scoring >= filter.min_score are used.
    """
    from mga.distill.core.console import console
    from mga.distill.core.errors import MgaError
    from mga.distill.core.io import check_input, check_output
    from mga.distill.train.launch import train as train_tool_model
    from mga.distill.train.sft_data import build_sft_datasets

    if stage not in ("pairs", "rewrite"):
        raise MgaError(f"--stage {stage!r}: choose pairs or rewrite")
    check_input(input)
    check_output(output, [input], folder=True)
    cfg = load_config(recipe, set_)
    if merge is not None:
        cfg.train.merge = merge
    rows = _reference_as_rows(input, stage, output / "data", cfg.filter.min_score)
    train_path, eval_path = build_sft_datasets(
        rows, stage, output / "data", language=cfg.language, eval_fraction=cfg.train.eval_fraction,
        seed=cfg.seed, num_pairs=cfg.label.num_pairs,
    )
    checkpoint = train_tool_model(train_path, eval_path, output, cfg.train, student=cfg.train.student, stage=stage)
    console.print(f"checkpoint: {checkpoint}", markup=False, soft_wrap=True)


def _reference_as_rows(path: Path, stage: str, folder: Path, min_score: int) -> Path:
    """A reference-set file (one row per document with hand-written pairs) as kept labels; other files as they are."""
    from mga.distill.core.io import iter_rows, write_rows
    from mga.distill.core.schema import score_of

    first = next(iter_rows(path), {})
    if "meta" in first or "text" not in first or "pairs" not in first:
        return path
    from mga.judge.reference import reference_judged_rows, reference_pairs_rows

    if stage == "pairs":
        rows = reference_pairs_rows(path)
    else:
        rows = [r for r in reference_judged_rows(path) if (score_of(r) or 0) >= min_score]
    return write_rows(folder / f"reference.{stage}.jsonl", rows)
