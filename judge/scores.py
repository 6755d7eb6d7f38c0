"""Score shares of judged rows, one definition for the whole toolkit (reports, the loop, calibration).

Conventions of the paper: Total counts every item, unscored ones included, and unscored items count as
failures (Table 1's counts sum to less than its Total, yet the rates divide by the Total). Rates are
percentages rounded half-up to 2 decimals; Diff is the difference of Rate(>=3) to the reference model in
percentage points. The share "<=2" counts scores 1 and 2 only (unscored is its own column).
The judge's control rows (`mga.judge.controls`) are never items: `summarize` leaves them out unless asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.schema import is_control, score_of

SCORES = (5, 4, 3, 2, 1)


def percent(part: int, total: int) -> float:
    """100 * part / total rounded half-up to 2 decimals (0.0 for an empty total)."""
    if total <= 0:
        return 0.0
    return float((Decimal(100 * part) / Decimal(total)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def summarize_counts(counts: dict[int, int], total: int | None = None) -> dict[str, Any]:
    """Summary from score counts; items of `total` beyond the counted ones are unscored (failures)."""
    counts = {s: int(counts.get(s, 0)) for s in SCORES}
    scored = sum(counts.values())
    total = scored if total is None else int(total)
    if total < scored:
        raise MgaError(f"total {total} is smaller than the {scored} scored items")
    mean = sum(s * n for s, n in counts.items()) / scored if scored else None
    return {
        "total": total,
        "counts": counts,
        "unscored": total - scored,
        "rate_ge3": percent(counts[5] + counts[4] + counts[3], total),
        "le2": percent(counts[2] + counts[1], total),
        "ge4": percent(counts[5] + counts[4], total),
        "eq5": percent(counts[5], total),
        "mean_score": None if mean is None else round(mean, 3),
        "_exact_rate_ge3": 100 * (counts[5] + counts[4] + counts[3]) / total if total else 0.0,
    }


def summarize(rows: Iterable[dict[str, Any]], *, include_controls: bool = False) -> dict[str, Any]:
    """Total (unscored included), counts of 5..1, unscored, Rate(>=3), <=2, >=4, =5 (percent of Total).

    Control rows are skipped (they test the judge, they are no model's output) unless `include_controls`."""
    counts = {s: 0 for s in SCORES}
    total = 0
    for row in rows:
        if is_control(row) and not include_controls:
            continue
        total += 1
        score = score_of(row)
        if score is not None:
            counts[score] += 1
    return summarize_counts(counts, total)


def diff_points(summary: dict[str, Any], reference: dict[str, Any]) -> float:
    """Rate(>=3) minus the reference's, in percentage points, rounded half-up to 2 decimals."""
    value = Decimal(repr(summary["_exact_rate_ge3"] - reference["_exact_rate_ge3"]))
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def rate_ge3(rows: Iterable[dict[str, Any]]) -> float:
    """Rate(>=3) in percent of all rows but controls, unscored rows counting as failures (unrounded)."""
    return summarize(rows)["_exact_rate_ge3"]
