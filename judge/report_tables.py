"""The report's tables and charts: Table 1 (Rate(>=3), Diff, their intervals), Table 2 (shares), the quality
table, the score chart and the copy-rate chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.plotting import new_figure, save_figure
from mga.judge.scores import SCORES, percent

TABLE1_HEADER = ["model", "Total", "5", "4", "3", "2", "1", "unscored", "Rate(≥3)", "95% CI",
                 "Diff (points)", "Diff 95% CI"]
TABLE2_HEADER = ["model / variant", "Total", "5", "4", "3", "2", "1", "unscored", "≤2", "≥4", "=5"]


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_pct(x: float) -> str:
    return f"{x:.2f}%"


def fmt_ci(ci: list[float] | None, unit: str = "") -> str:
    return "" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]{unit}"


def _fmt_diff(x: float | None) -> str:
    return "" if x is None else f"{x:+.2f}"


def table1_rows(summaries: dict[str, dict[str, Any]], reference: str | None) -> list[list[str]]:
    out = []
    for name, s in summaries.items():
        is_reference = name == reference
        out.append([name, fmt_int(s["total"]), *(fmt_int(s["counts"][k]) for k in SCORES), fmt_int(s["unscored"]),
                    fmt_pct(s["rate_ge3"]), fmt_ci(s["rate_ge3_ci95"]),
                    "(reference)" if is_reference else _fmt_diff(s.get("diff")),
                    "" if is_reference else fmt_ci(s.get("diff_ci95"))])
    return out


def table2_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[name, fmt_int(s["total"]), *(fmt_int(s["counts"][k]) for k in SCORES), fmt_int(s["unscored"]),
             *(f"{fmt_pct(s[k])} {fmt_ci(s[f'{k}_ci95'])}" for k in ("le2", "ge4", "eq5"))]
            for name, s in summaries.items()]


def score_chart(summaries: dict[str, dict[str, Any]], out_png: Path, title: str) -> Path:
    """Grouped bars: share of Total per score (5..1, unscored), one colour per model."""
    categories = [*(str(s) for s in SCORES), "unscored"]
    names = list(summaries)
    width = 0.8 / max(len(names), 1)
    fig, ax = new_figure((max(6.0, 1.2 * len(categories) + 0.4 * len(names)), 4.0))
    for i, name in enumerate(names):
        s = summaries[name]
        values = [percent(s["counts"][k], s["total"]) for k in SCORES] + [percent(s["unscored"], s["total"])]
        xs = [c + (i - (len(names) - 1) / 2) * width for c in range(len(categories))]
        bars = ax.bar(xs, values, width=width, label=f"{name} (Rate≥3 {s['rate_ge3']:.2f}%)")
        if len(names) <= 4:
            ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel("judge score")
    ax.set_ylabel("% of Total (unscored included)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_png)


QUALITY_HEADER = ["model / variant", "rewrites", "copy rate", "longest copy (words)", "length ratio", "diversity",
                  "distinct-2", "language kept", "near-duplicates"]


def _fmt_opt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return ""
    return fmt_pct(100 * x) if pct else f"{x:.3f}"


def quality_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One line per label of `mga.judge.monitors.quality_summary` figures."""
    return [[name, fmt_int(q["rewrites"]), _fmt_opt(q["copy_rate"]),
             "" if q["longest_copy_words"] is None else f"{q['longest_copy_words']:.1f}", _fmt_opt(q["length_ratio"]),
             _fmt_opt(q["diversity"]), _fmt_opt(q["distinct_2"]), _fmt_opt(q["language_kept"], pct=True),
             _fmt_opt(q["near_duplicate_share"], pct=True)]
            for name, q in summaries.items()]


COPY_RATE_BINS = [i / 20 for i in range(21)]


def copy_rate_chart(rates: dict[str, list[float]], out_png: Path, max_copy_rate: float) -> Path:
    """Step histograms of the per-rewrite copy rate, one per model / variant, in % of its rewrites; the dashed
    line is the filter's `max_copy_rate`. The PNG's Description names the lines."""
    fig, ax = new_figure((7.5, 4.0))
    for label, values in rates.items():
        ax.hist(values, bins=COPY_RATE_BINS, weights=[100 / len(values)] * len(values), histtype="step", linewidth=1.6,
                label=f"{label} (n={len(values):,}, mean {sum(values) / len(values):.2f})")
    ax.axvline(max_copy_rate, linestyle="--", color="#b00020", linewidth=1, label=f"filter: max_copy_rate {max_copy_rate:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("copy rate (share of the rewrite's word 8-grams found in its source)")
    ax.set_ylabel("% of the line's rewrites")
    ax.set_title("Copy rate per model / variant")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_png, metadata={"Title": "Copy rate per model / variant",
                                               "Description": "lines: " + "; ".join(rates)})
