"""How well a judge agrees with the reference scores (`mga judge --calibrate`).

The reference set's rewrites are judged anew by the configured backend and compared with their
hand-assigned scores: exact agreement, agreement within one point, Spearman's rank correlation and the
5x5 confusion matrix (rows: reference score, columns: judge score). An unscored answer counts as a
disagreement in the agreement rates and is listed apart from the matrix, with the parse rate (the share of
items the judge gave a score) and the unscored items by reason; the judge's controls are judged alongside and
their verdict shown (docs/judge.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mga.distill.core.config import TeacherConfig
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.reasons import count_reasons, reasons_line
from mga.distill.core.schema import is_control, rewrite_key, score_of
from mga.distill.generate.protocol import Generator
from mga.judge.config import JudgeConfig
from rich.table import Table


def agreement(reference: list[int], judged: list[int | None]) -> dict[str, Any]:
    """Exact / within-1 rates over all items (unscored = disagreement), Spearman over scored items, confusion."""
    from scipy.stats import spearmanr

    if len(reference) != len(judged) or not reference:
        raise MgaError("calibration needs one judge score per reference score, at least one")
    n = len(reference)
    pairs = [(r, j) for r, j in zip(reference, judged) if j is not None]
    confusion = [[0] * 5 for _ in range(5)]
    for r, j in pairs:
        confusion[r - 1][j - 1] += 1
    rho = None
    if len(pairs) >= 3 and len({r for r, _ in pairs}) > 1 and len({j for _, j in pairs}) > 1:
        rho = round(float(spearmanr([r for r, _ in pairs], [j for _, j in pairs]).statistic), 4)
    return {
        "n": n,
        "scored": len(pairs),
        "unscored": n - len(pairs),
        "parse_rate": round(len(pairs) / n, 4),
        "exact": round(sum(r == j for r, j in pairs) / n, 4),
        "within_1": round(sum(abs(r - j) <= 1 for r, j in pairs) / n, 4),
        "spearman": rho,
        "mean_abs_error": round(sum(abs(r - j) for r, j in pairs) / len(pairs), 4) if pairs else None,
        "confusion": confusion,
    }


def calibration_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"judge calibration: {result['judge']} vs reference ({result['reference']})")
    table.add_column("reference \\ judge")
    for score in range(1, 6):
        table.add_column(str(score), justify="right")
    for score in range(1, 6):
        row = result["confusion"][score - 1]
        table.add_row(str(score), *(f"[bold]{v}[/bold]" if i == score - 1 else str(v) for i, v in enumerate(row)))
    rho = "n/a" if result["spearman"] is None else f"{result['spearman']:.3f}"
    table.caption = (f"n={result['n']}  parsed {100 * result['parse_rate']:.1f}%  exact {100 * result['exact']:.1f}%  "
                     f"within ±1 {100 * result['within_1']:.1f}%  Spearman {rho}  unscored {result['unscored']}")
    if result.get("unscored_reasons"):
        table.caption += "\nunscored by reason: " + reasons_line(result["unscored_reasons"])
    return table


def calibrate(
    cfg: JudgeConfig | None = None,
    reference_path: str | Path | None = None,
    *,
    language: str = "en",
    generator: Generator | None = None,
    teacher: TeacherConfig | None = None,
    work_dir: str | Path | None = None,
    output: str | Path | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Judge the reference rewrites with `cfg.backend` and return (and print) the agreement. With `output` the
    judged rows (controls included) are kept there, and the rewrites given to the judge and the judge's
    request cache beside them, so a rerun pays for nothing twice; else they live in `work_dir` or a
    temporary folder."""
    from mga.judge.controls import control_verdict, verdict_line
    from mga.judge.judging import judge_file
    from mga.judge.reference import default_reference_path, reference_judged_rows

    cfg = cfg or JudgeConfig()
    path = Path(reference_path) if reference_path else default_reference_path(language)
    if not path.is_file():
        raise MgaError(f"reference set not found: {path}")
    reference_rows = [r for r in reference_judged_rows(path) if score_of(r) is not None]
    if not reference_rows:
        raise MgaError(f"{path}: no scored reference rewrites")
    with tempfile.TemporaryDirectory(prefix="mga-calibrate-") as tmp:
        folder = Path(output).parent if output else Path(work_dir) if work_dir else Path(tmp)
        unjudged = [{k: v for k, v in row.items() if k != "judge"} for row in reference_rows]
        write_rows(folder / "reference-rewrites.jsonl", unjudged)
        out = Path(output) if output else folder / f"reference-judged-{cfg.backend}.jsonl"
        judge_file(folder / "reference-rewrites.jsonl", out, cfg, language=language, generator=generator,
                   teacher=teacher, work_dir=folder)
        judged_rows = read_rows(out)
        judged = {rewrite_key(r): score_of(r) for r in judged_rows if not is_control(r)}
        reasons = count_reasons(r["judge"].get("reason") for r in judged_rows
                                if not is_control(r) and score_of(r) is None)
        judge_names = sorted({f"{r['judge']['backend']} ({r['judge'].get('model')})" for r in judged_rows})
    result = agreement([score_of(r) for r in reference_rows], [judged.get(rewrite_key(r)) for r in reference_rows])
    result.update({"judge": ", ".join(judge_names), "backend": cfg.backend, "reference": str(path), "language": language,
                   "unscored_reasons": reasons, "controls": control_verdict(judged_rows, cfg)})
    if show:
        console.print(calibration_table(result))
        console.print(verdict_line(result["controls"]), markup=False)
    return result
