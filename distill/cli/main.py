"""The `mga` command: one typer app mapping subcommand names to plain functions."""

from __future__ import annotations

import logging
import os

import typer
from mga.distill.cli import (
    analyze,
    base_model,
    expand,
    judge,
    label,
    language,
    quantize,
    run,
    tiny_model,
    train,
)
from mga.distill.core.console import console
from mga.distill.core.errors import DiskFull, MgaError, disk_full, is_disk_full

app = typer.Typer(
    name="mga",
    help="MGA toolkit: distil a teacher LLM into small, quantized genre-audience reformulation tool models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("label")(label.label)
app.command("judge")(judge.judge)
app.command("train")(train.train)
app.command("quantize")(quantize.quantize)
app.command("report")(judge.report)
app.command("run")(run.run)
app.command("expand")(expand.expand)
app.command("tiny-model")(tiny_model.tiny_model)
app.command("base-model")(base_model.base_model)
app.add_typer(language.app, name="language")
app.add_typer(analyze.app, name="analyze")


def configure_environment() -> None:
    """Quiet, offline-friendly defaults set once by the command, never on import.

    Nothing in the toolkit needs a hub; the toolkit shows its own progress per stage, so the per-file bars
    of the hub/datasets libraries are noise; GPTQModel's CPU worker pool needs at least 2 workers even on a
    2-core machine; torchao (pulled in by GPTQModel) logs CUDA-only kernels it cannot load on CPU machines.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


INTERRUPTED = 130


def _error(message: str, code: int = 2) -> SystemExit:
    for line in message.splitlines():
        console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    return SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes (`MgaError`, bad options) print as `error: ...` lines and exit 2, without a
    traceback; Ctrl-C keeps what is done and says how to resume (exit 130)."""
    try:
        from typer._click import (
            exceptions as click,  # typer >= 0.2x carries its own click
        )
    except ImportError:  # pragma: no cover - older typer
        import click.exceptions as click  # type: ignore[no-redef]

    configure_environment()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="mga")
    except DiskFull as e:
        raise _error(str(e.first()), e.exit_code) from None
    except MgaError as e:
        raise _error(str(e), e.exit_code) from None
    except click.NoArgsIsHelpError as e:
        console.print(e.ctx.get_help(), markup=False, highlight=False) if e.ctx is not None else None
        raise SystemExit(2) from None
    except click.UsageError as e:
        hint = f" (see mga {e.ctx.info_name} --help)" if e.ctx is not None and e.ctx.parent is not None else ""
        raise _error(e.format_message().replace("\n", " ") + hint) from None
    except click.ClickException as e:
        raise _error(e.format_message(), e.exit_code) from None
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except Exception as e:  # a full disk met by a library (sqlite, pyarrow, safetensors): no traceback either
        if not is_disk_full(e):
            raise
        where = getattr(e, "filename", None) or "a file"
        raise _error(str(disk_full(where, "everything finished before it is kept (rows, answers, spending records, "
                                          "finished stages)"))) from None
    if code == INTERRUPTED:  # typer turns Ctrl-C into exit code 130
        console.print("interrupted; rerun the same command to resume (finished rows, answers and spending "
                      "records are kept)", markup=False)
    raise SystemExit(code if isinstance(code, int) else 0)
