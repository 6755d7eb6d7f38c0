"""What every subcommand shares: recipe + `--set` overrides + command options -> validated `RunConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError

RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="YAML recipe supplying defaults.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe key: KEY=VALUE (repeatable).")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Redo an output that holds another input's rows (instead of refusing it).")]


def load_config(recipe: Path | None, overrides: list[str] | None, name: str = "adhoc", options: dict[str, Any] | None = None):
    """The recipe with `--set` overrides and command options applied, validated once, or the defaults.

    `options` maps an option's flag to (recipe key, value) for the options given (value not None); a bad
    value is reported under the flag: `--concurrency 0 (teacher.concurrency): ...`."""
    from mga.distill.pipeline.recipe import (
        apply_override,
        load_recipe,
        set_key,
        validate_recipe,
    )

    given = {flag: kv for flag, kv in (options or {}).items() if kv[1] is not None}

    def apply(data: dict) -> None:
        for assignment in overrides or []:
            apply_override(data, assignment)
        for flag, (key, value) in given.items():
            set_key(data, key, value, flag)

    try:
        if recipe is not None:
            return load_recipe(recipe, None, prepare=apply)
        data: dict = {"name": name}
        apply(data)
        return validate_recipe(data, source="--set")
    except MgaError as e:
        raise MgaError(_name_options(str(e), given)) from None


def _name_options(message: str, given: dict[str, tuple[str, Any]]) -> str:
    """Problems of keys set by an option, named by the option (with its value) rather than the key alone."""
    lines = []
    for line in message.splitlines():
        for flag, (key, value) in given.items():
            if f": {key}: " in line or line.startswith(f"{key}: "):
                detail = line.split(f"{key}: ", 1)[1]
                line = f"{flag} {value}: {detail.replace(f' (got {value!r})', '')} (recipe key {key})"
                break
        lines.append(line)
    return "\n".join(lines)


def not_implemented(command: str, issue: str) -> None:
    console.print(f"mga {command}: not implemented yet ({issue})", markup=False)
    raise typer.Exit(1)
