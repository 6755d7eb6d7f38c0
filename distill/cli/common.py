"""What every subcommand shares: recipe + `--set` overrides -> validated `RunConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.console import console

RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="YAML recipe supplying defaults.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe key: KEY=VALUE (repeatable).")]


def load_config(recipe: Path | None, overrides: list[str] | None, name: str = "adhoc"):
    """The recipe with overrides applied, or the defaults (with overrides) when no recipe is given."""
    from mga.distill.pipeline.recipe import apply_override, load_recipe, validate_recipe

    if recipe is not None:
        return load_recipe(recipe, overrides)
    data: dict = {"name": name}
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate_recipe(data, source="--set")


def not_implemented(command: str, issue: str) -> None:
    console.print(f"mga {command}: not implemented yet ({issue})", markup=False)
    raise typer.Exit(1)
