"""`mga train`: SFT of one tool model per stage with TRL (+ PEFT LoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import RecipeOpt, SetOpt, not_implemented


def train(
    stage: Annotated[str, typer.Option(help="pairs (SLM-1) or rewrite (SLM-2).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Kept (filtered) labels, .jsonl or .parquet.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for checkpoint, split ids, loss curve.")],
    merge: Annotated[bool, typer.Option(help="Write a merged full checkpoint after LoRA training.")] = False,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune the student on kept labels (assistant-only loss, EOS learned); full or LoRA."""
    not_implemented("train", "issue: SFT")
