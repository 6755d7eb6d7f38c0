"""The `mga` command: one typer app mapping subcommand names to plain functions."""

from __future__ import annotations

import typer

from distill.commands import expand, label, run, tiny_model, train
from distill.console import console
from distill.errors import MgaError
from judge import commands as judge_commands
from quantize import commands as quantize_commands

app = typer.Typer(
    name="mga",
    help="MGA toolkit: distil a teacher LLM into small, quantized genre-audience reformulation tool models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("label")(label.label)
app.command("judge")(judge_commands.judge)
app.command("train")(train.train)
app.command("quantize")(quantize_commands.quantize)
app.command("report")(judge_commands.report)
app.command("run")(run.run)
app.command("expand")(expand.expand)
app.command("tiny-model")(tiny_model.tiny_model)


def main() -> None:
    """Entry point: user mistakes (`MgaError`) print as `error: ...` lines and exit 2, without a traceback."""
    try:
        app()
    except MgaError as e:
        for line in str(e).splitlines():
            console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        console.print("interrupted: finished rows are saved; rerun the same command to resume", markup=False)
        raise SystemExit(130) from None
