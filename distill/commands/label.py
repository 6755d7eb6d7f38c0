"""`mga label`: teacher (or SLM) labels for stage 1 (pairs) and stage 2 (rewrites)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import RecipeOpt, SetOpt, not_implemented


def label(
    stage: Annotated[str, typer.Option(help="pairs (stage 1: 5 genre-audience pairs) or rewrite (stage 2).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Documents (stage pairs) or pairs file (stage rewrite).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .jsonl or .parquet (resumable).")],
    variant: Annotated[str, typer.Option(help="Rewrite prompt: base, strict or relaxed.")] = "base",
    teacher_model: Annotated[str | None, typer.Option(help="Local checkpoint to answer instead of an endpoint.")] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Label documents with the teacher over any OpenAI-compatible endpoint, or with a local SLM checkpoint."""
    not_implemented("label", "issue: teacher labeling")
