"""`mga judge` and `mga report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import RecipeOpt, SetOpt, not_implemented


def judge(
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Rewrites to score (.jsonl/.parquet).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Judged rows (resumable).")] = None,
    backend: Annotated[str | None, typer.Option(help="llm (Limited Consistency) or heuristic (offline).")] = None,
    calibrate: Annotated[bool, typer.Option(help="Report agreement with the reference scores.")] = False,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score (original, rewrite) pairs 1-5 under Limited Consistency; unparseable answers become 'unscored'."""
    not_implemented("judge", "issue: judge and reports")


def report(
    inputs: Annotated[list[Path], typer.Argument(help="Judged files, one per model (NAME=PATH to name them).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("report"),
    embed: Annotated[bool, typer.Option(help="Draw the t-SNE embedding map.")] = False,
) -> None:
    """Write the Table 1 / Table 2 report (md, html, json, charts) from judged files."""
    not_implemented("report", "issue: judge and reports")
