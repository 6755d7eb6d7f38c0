"""`mga run`: the whole pipeline from one recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import SetOpt
from distill.console import console


def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe, e.g. recipes/quickstart.yaml.")],
    set_: SetOpt = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Redo from this stage on.")] = None,
) -> None:
    """Run a recipe: sample, label, judge, filter, train rounds, quantize, report (resumable)."""
    from distill.recipe import load_recipe

    config = load_recipe(recipe, set_)
    console.print(f"recipe {recipe} is valid (run '{config.name}'); the pipeline is not implemented yet", markup=False)
    raise typer.Exit(1)
