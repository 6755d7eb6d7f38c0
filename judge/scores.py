"""Score shares of judged rows, one definition for the whole toolkit (reports, the loop, calibration).

Conventions of the paper: Total counts every item, unscored ones included, and unscored items count as
failures (Table 1's counts sum to less than its Total, yet the rates divide by the Total). Rates are
percentages rounded half-up to 2 decimals; Diff is the difference of Rate(>=3) to the reference model in
percentage points. The share "<=2" counts scores 1 and 2 only (unscored is its own column).
The judge's control rows (`mga.judge.controls`) are never items: `summarize` leaves them out unless asked.

Intervals: every rate and share carries a 95% Wilson score interval (`wilson_ci`, percent). Diff carries a
95% paired bootstrap interval (`paired_diff_ci`): both models answered the same items (matched by
`item_key`), so only the items where exactly one of them scores >= 3 move the difference, and resampling
items keeps that pairing. The resampling draws the three kinds of item (only the model passes, only the
reference passes, both or neither) from a multinomial with a fixed seed, which is the same distribution as
resampling the items themselves and costs nothing for any item count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.schema import is_control, item_key, score_of

SCORES = (5, 4, 3, 2, 1)
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 20_000
BOOTSTRAP_SEED = 20250206
SHARES = {"rate_ge3": (5, 4, 3), "le2": (2, 1), "ge4": (5, 4), "eq5": (5,)}


def _round2(x: float) -> float:
    return float(Decimal(repr(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def wilson_ci(part: int, total: int, z: float = Z95) -> list[float]:
    """95% Wilson score interval of the share part/total, in percent rounded to 2 decimals ([0, 100] if empty)."""
    if total <= 0:
        return [0.0, 100.0]
    p = part / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return [_round2(100 * max(0.0, centre - half)), _round2(100 * min(1.0, centre + half))]


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
    summary: dict[str, Any] = {"total": total, "counts": counts, "unscored": total - scored}
    for name, scores in SHARES.items():
        part = sum(counts[k] for k in scores)
        summary[name] = percent(part, total)
        summary[f"{name}_ci95"] = wilson_ci(part, total)
    summary["mean_score"] = None if mean is None else round(mean, 3)
    summary["_exact_rate_ge3"] = 100 * (counts[5] + counts[4] + counts[3]) / total if total else 0.0
    return summary


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


def passes_by_item(rows: Iterable[dict[str, Any]]) -> dict[str, bool]:
    """Per eval item and variant (controls left out): did the row score >= 3 (unscored = no)."""
    return {f"{item_key(row)}#{row.get('variant') or 'base'}": (score_of(row) or 0) >= 3
            for row in rows if not is_control(row)}


def paired_diff_ci(
    rows: Iterable[dict[str, Any]],
    reference: Iterable[dict[str, Any]],
    *,
    seed: int = BOOTSTRAP_SEED,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """Paired 95% interval of Rate(>=3) minus the reference's, in points, over the items both answered.

    Returns `{"items", "only_model", "only_reference", "diff", "ci95"}`: the common items, the discordant
    counts, the paired difference and its percentile bootstrap interval (fixed seed: the same numbers on
    every run)."""
    import numpy as np

    mine, theirs = passes_by_item(rows), passes_by_item(reference)
    common = mine.keys() & theirs.keys()
    n = len(common)
    only_model = sum(1 for k in common if mine[k] and not theirs[k])
    only_reference = sum(1 for k in common if theirs[k] and not mine[k])
    if n == 0:
        return {"items": 0, "only_model": 0, "only_reference": 0, "diff": None, "ci95": None}
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [only_model / n, only_reference / n, 1 - (only_model + only_reference) / n], size=resamples)
    diffs = 100.0 * (draws[:, 0] - draws[:, 1]) / n
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"items": n, "only_model": only_model, "only_reference": only_reference,
            "diff": _round2(100.0 * (only_model - only_reference) / n), "ci95": [_round2(float(low)), _round2(float(high))]}


def items_for_width(items: int, width: float, target: float) -> int | None:
    """Eval items that would narrow an interval of `width` points (measured on `items`) to `target` points.

    Interval widths shrink as 1/sqrt(items) at the same discordance; None when no target can be reached."""
    if target <= 0 or items <= 0:
        return None
    if width <= target:
        return items
    return math.ceil(items * (width / target) ** 2)
