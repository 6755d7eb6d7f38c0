"""Fit the heuristic judge on a language's reference set and say how well the fit carries over to new text.

`mga judge --calibrate --leave-one-out` computes, for every weight of the cosine in the signal (0, 0.1, ...,
1), the bands fitted on the whole reference set (in-sample agreement) and, leaving one document out at a
time, the bands fitted on the other documents applied to the left-out one (leave-one-out agreement: the
figure to trust, since a new corpus is never the reference set). `--write-bands` records the fit at the
pack's `signal_weight` in its language.yaml, so the figures quoted anywhere come from this command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.language import LANGUAGE_FILE, language_pack, pack_dir
from mga.distill.core.schema import score_of
from mga.judge.calibrate import agreement
from mga.judge.heuristic import HeuristicJudge, band_score, fit_bands
from rich.table import Table

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def leave_one_out(signals: list[float], scores: list[int], groups: list[str]) -> list[int]:
    """Each item's score from bands fitted on the items of the other groups (documents)."""
    if len(set(groups)) < 2:
        raise MgaError("leave-one-out needs a reference set with at least two documents")
    predicted = [0] * len(signals)
    for group in dict.fromkeys(groups):
        rest = [i for i, g in enumerate(groups) if g != group]
        bands = fit_bands([signals[i] for i in rest], [scores[i] for i in rest])
        for i, g in enumerate(groups):
            if g == group:
                predicted[i] = band_score(signals[i], bands)
    return predicted


def fit_report(language: str = "en", reference_path: str | Path | None = None) -> dict[str, Any]:
    """In-sample and leave-one-document-out agreement per signal weight, and the fit at the pack's weight."""
    from mga.judge.reference import default_reference_path, reference_judged_rows

    pack = language_pack(language)
    if reference_path is None and pack.reference is None:
        raise MgaError(f"language pack '{language}' names no reference set (`reference:` in its language.yaml)")
    path = Path(reference_path) if reference_path else default_reference_path(language)
    if not path.is_file():
        raise MgaError(f"reference set not found: {path}")
    rows = [r for r in reference_judged_rows(path) if score_of(r) is not None]
    judge = HeuristicJudge(language, signal_weight=0.0)
    parts = judge.signals([r["meta"]["raw_text"] for r in rows], [r["content_split"] for r in rows])
    truth = [score_of(r) for r in rows]
    groups = [r["meta"]["docid"] for r in rows]
    by_weight = []
    for weight in sorted({*WEIGHTS, pack.heuristic_judge.signal_weight}):
        signals = [round(weight * p["cosine"] + (1 - weight) * p["coverage"], 4) for p in parts]
        bands = fit_bands(signals, truth)
        by_weight.append({
            "weight": weight,
            "bands": bands,
            "in_sample": agreement(truth, [band_score(s, bands) for s in signals]),
            "leave_one_out": agreement(truth, leave_one_out(signals, truth, groups)),
        })
    chosen = next(w for w in by_weight if w["weight"] == pack.heuristic_judge.signal_weight)
    return {"language": language, "reference": str(path), "n": len(rows), "documents": len(set(groups)),
            "signal_weight": chosen["weight"], "bands": chosen["bands"], "in_sample": chosen["in_sample"],
            "leave_one_out": chosen["leave_one_out"], "by_weight": by_weight}


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def fit_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"heuristic judge fit, {report['language']}: {report['documents']} documents, "
                        f"{report['n']} rewrites ({report['reference']})")
    for column in ("cosine weight", "bands", "in-sample exact", "±1", "left-out exact", "±1", "Spearman"):
        table.add_column(column, justify="right", no_wrap=True)
    for w in report["by_weight"]:
        loo, ins = w["leave_one_out"], w["in_sample"]
        rho = "n/a" if loo["spearman"] is None else f"{loo['spearman']:.2f}"
        mark = " *" if w["weight"] == report["signal_weight"] else ""
        table.add_row(f"{w['weight']:.1f}{mark}", " ".join(f"{b:.2f}" for b in w["bands"]), _pct(ins["exact"]),
                      _pct(ins["within_1"]), _pct(loo["exact"]), _pct(loo["within_1"]), rho)
    table.caption = ("* the pack's signal_weight. Leave-one-out: bands fitted without a document, applied to it; "
                     "the figure to expect on new text.")
    return table


def bands_block(report: dict[str, Any], weight: float) -> str:
    """The `heuristic_judge:` block of language.yaml for this fit (the pack's weight kept)."""
    loo = report["leave_one_out"]
    figures = ", ".join(f"{k}: {loo[k]}" for k in ("exact", "within_1", "spearman", "mean_abs_error"))
    reference = Path(report["reference"]).name
    return (
        "heuristic_judge:\n"
        "  # Written by `mga judge --calibrate --leave-one-out --write-bands`; rerun it after changing the\n"
        "  # reference set or signal_weight (a test fails when these fall behind a fresh fit).\n"
        f"  signal_weight: {weight}\n"
        f"  bands: [{', '.join(str(b) for b in report['bands'])}]\n"
        f"  fitted_on: {reference}, {report['documents']} documents, {report['n']} rewrites\n"
        f"  leave_one_out: {{{figures}, n: {report['n']}}}\n"
    )


def write_bands(language: str, report: dict[str, Any], root: Path | None = None) -> Path:
    """Replace the `heuristic_judge:` block of the pack's language.yaml (comments elsewhere kept)."""
    path = pack_dir(language, root) / LANGUAGE_FILE
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("heuristic_judge:")), len(lines))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    block = bands_block(report, report["signal_weight"])
    head = "".join(lines[:start])
    if head and not head.endswith("\n"):
        head += "\n"
    path.write_text(head + block + "".join(lines[end:]), encoding="utf-8")
    language_pack.cache_clear()
    return path
