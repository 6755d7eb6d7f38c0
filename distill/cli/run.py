"""`mga run`: the whole pipeline from one recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import OverwriteOpt, SetOpt
from mga.distill.core.console import console
from mga.distill.pipeline.runner import STAGES

STAGE_HELP = ", ".join(STAGES)


def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe, e.g. recipes/quickstart.yaml.")],
    set_: SetOpt = None,
    until: Annotated[str | None, typer.Option(
        help=f"Run the stages of this kind and earlier ones, for every variant and scheme ({STAGE_HELP}).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Redo every stage of this kind and everything after it.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print per stage the requests, tokens, cost and time; send nothing.")] = False,
    latency: Annotated[float, typer.Option(help="Seconds per request assumed by --dry-run's wall time.")] = 2.0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run a recipe end to end: chunk, label, judge, filter, SFT rounds, quantize, report.

    Resumable: a rerun skips stages that finished with the same config and inputs and resumes a crashed
    stage where it stopped. Results land in runs/<name>/ (report in runs/<name>/report/report.html).
    """
    from mga.distill.pipeline.pipeline import run_pipeline
    from mga.distill.pipeline.recipe import load_recipe

    config = load_recipe(recipe, set_)
    if dry_run:
        from mga.distill.generate.estimate import estimate_table
        from mga.distill.pipeline.dry_run import dry_run as estimate
        from mga.distill.pipeline.dry_run import print_notes

        estimates = estimate(config, latency_s=latency)
        console.print(estimate_table(estimates, title=f"mga run {config.name} --dry-run: nothing was sent"))
        print_notes(estimates)
        return
    out = run_pipeline(config, from_stage=from_, until=until, overwrite=overwrite)
    report = out / "report" / "report.html"
    if report.exists():
        console.print(f"report: {report}", markup=False)
