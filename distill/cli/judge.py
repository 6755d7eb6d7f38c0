"""`mga judge` and `mga report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import RecipeOpt, SetOpt, load_config
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError


def judge(
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Rewrites to score (.jsonl/.parquet).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Judged rows (resumable); with --calibrate: "
                                                "the reference rewrites judged, kept with the judge's cache.")] = None,
    backend: Annotated[str | None, typer.Option(help="llm (Limited Consistency) or heuristic (offline).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Judge endpoint, e.g. http://localhost:8000/v1 (judge.endpoint).")] = None,
    model: Annotated[str | None, typer.Option(help="Judge's served model name (judge.endpoint).")] = None,
    calibrate: Annotated[bool, typer.Option(help="Report agreement with the reference scores.")] = False,
    reference: Annotated[Path | None, typer.Option(help="Reference set for --calibrate; default: the bundled one.")] = None,
    allow_weak_judge: Annotated[bool, typer.Option(help="Exit 0 even when the judge fails its controls.")] = False,
    leave_one_out: Annotated[bool, typer.Option("--leave-one-out", help="With --calibrate: fit the heuristic judge's bands and report agreement with each document left out of the fit.")] = False,
    write_bands: Annotated[bool, typer.Option("--write-bands", help="With --leave-one-out: record the fit in the language pack's language.yaml.")] = False,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score (original, rewrite) pairs 1-5 under Limited Consistency; unparseable answers become 'unscored'."""
    from mga.distill.core.io import check_input, check_output, require_fields

    if output is not None:
        check_output(output, [input])
    if input is not None:
        check_input(input)
        require_fields(input, "rewrites", "meta.raw_text", "content_split")
    cfg = load_config(recipe, set_, options={"--backend": ("judge.backend", backend),
                                             "--base-url": ("teacher.base_url", base_url), "--model": ("teacher.model", model)})
    if (base_url or model) and cfg.judge.endpoint is not None:  # the options name the judge's endpoint
        cfg.judge.endpoint = cfg.judge.endpoint.model_copy(update={k: v for k, v in (("base_url", base_url), ("model", model)) if v})
    if (leave_one_out or write_bands) and not calibrate:
        raise MgaError("--leave-one-out and --write-bands go with --calibrate")
    if write_bands and not leave_one_out:
        raise MgaError("--write-bands needs --leave-one-out (bands are only written with their leave-one-out figures)")
    if leave_one_out:
        _fit_heuristic(cfg.language, reference, write_bands)
        return
    if calibrate:
        from mga.judge.calibrate import calibrate as run_calibration

        run_calibration(cfg.judge, reference, language=cfg.language, teacher=cfg.teacher, output=output)
        return
    if input is None or output is None:
        raise MgaError("mga judge needs --input and --output (or --calibrate)")
    from mga.judge.judging import judge_file
    from mga.judge.scores import summarize

    out = judge_file(input, output, cfg.judge, language=cfg.language, teacher=cfg.teacher, seed=cfg.seed)
    from mga.distill.core.io import read_rows
    from mga.judge.controls import control_verdict, verdict_line

    rows = read_rows(out)
    s = summarize(rows)
    counts = " ".join(f"{k}:{v:,}" for k, v in s["counts"].items())
    console.print(f"judged {s['total']:,} rows ({cfg.judge.backend}) -> {out}: {counts} unscored:{s['unscored']:,} "
                  f"Rate(>=3) {s['rate_ge3']:.2f}% (95% CI {s['rate_ge3_ci95'][0]:.2f}-{s['rate_ge3_ci95'][1]:.2f})",
                  markup=False)
    verdict = control_verdict(rows, cfg.judge)
    console.print(verdict_line(verdict), markup=False)
    if verdict is not None and not verdict["passed"] and not allow_weak_judge:
        raise MgaError("the judge failed its controls (" + "; ".join(verdict["failures"]) + "): its scores do not tell "
                       "a faithful rewrite from an unrelated text; fix the judge (model, prompt, chat template), or rerun "
                       "with --allow-weak-judge (or --set judge.controls=0 to skip the controls)")


def _named(inputs: list[str]) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for item in inputs:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not name or not path:
            raise MgaError(f"report: expected NAME=PATH or PATH, got {item!r}")
        if name in models:
            hint = "give each NAME=PATH its own name" if sep else f"name them with NAME=PATH, e.g. {name}-2={path}"
            raise MgaError(f"report: model name '{name}' given twice ({hint})")
        if not Path(path).exists():
            raise MgaError(f"report: file not found: {path}")
        models[name] = Path(path)
    return models


def report(
    inputs: Annotated[list[str], typer.Argument(help="Judged files, one per model (NAME=PATH to name them).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("report"),
    embed: Annotated[bool, typer.Option(help="Draw the t-SNE embedding map.")] = False,
    reference_model: Annotated[str | None, typer.Option(help="Model Diff is measured against (default: teacher, else the first).")] = None,
    variants: Annotated[bool, typer.Option(help="Always add the Table 2 view (<=2, >=4, =5).")] = False,
    judge_label: Annotated[str | None, typer.Option(help="Who scored (default: read from the rows).")] = None,
    allow_unequal: Annotated[bool, typer.Option(help="Report models judged on different eval items (with a note).")] = False,
    target_gap: Annotated[float, typer.Option(help="Points: say when a Diff interval is wider than this.")] = 1.0,
    max_failed_share: Annotated[float, typer.Option(help="Flag models with more failed/unscored rows than this share.")] = 0.10,
) -> None:
    """Write the Table 1 / Table 2 report (md, html, json, charts) from judged files.

    Models must be judged on the same eval items (else an error, unless --allow-unequal). Rates carry 95%
    Wilson intervals and Diff a paired 95% interval."""
    from mga.judge.report import write_report

    path = write_report(_named(inputs), output, judge_label=judge_label, reference_model=reference_model,
                        embed=embed, table2=True if variants else None, allow_unequal=allow_unequal,
                        target_gap=target_gap, max_failed_share=max_failed_share)
    console.print((path.parent / "report.md").read_text(encoding="utf-8").split("## Charts")[0], markup=False)
    console.print(f"report written to {path.parent} (report.md, report.html, report.json, charts)", markup=False)


def _fit_heuristic(language: str, reference: Path | None, write: bool) -> None:
    """`--calibrate --leave-one-out [--write-bands]`: fit the heuristic judge of a language, print, record."""
    from mga.judge.fit import fit_report, fit_table, write_bands

    fit = fit_report(language, reference)
    console.print(fit_table(fit))
    loo = fit["leave_one_out"]
    console.print(f"{language}: bands {list(fit['bands'])} at cosine weight {fit['signal_weight']}; leave-one-out "
                  f"exact {100 * loo['exact']:.1f}%, within ±1 {100 * loo['within_1']:.1f}%", markup=False)
    if write:
        console.print(f"bands written to {write_bands(language, fit)}", markup=False)
