"""What makes a comparison of judged models trustworthy: equal item sets, paired Diff intervals, flags.

- `check_item_sets`: every model of Table 1 and every line of Table 2 must be judged on the same eval items
  (`item_key`, counted with multiplicity); otherwise one `MgaError` line, unless the caller allows it.
- `add_diffs`: Diff against the reference model with its paired 95% interval (`mga.judge.scores`).
- `interval_notes`: says plainly when a Diff interval is wider than the target gap, and how many eval
  items would narrow it to that width.
- `failure_flags`: models with more than `max_failed_share` failed or unscored rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.schema import item_key
from mga.judge.scores import diff_points, items_for_width, paired_diff_ci


def _items(rows: list[dict[str, Any]], distinct: bool = False) -> Counter:
    keys = Counter(item_key(row) for row in rows)
    return Counter(set(keys)) if distinct else keys


def check_item_sets(
    models: dict[str, list[dict[str, Any]]],
    reference: str,
    lines: dict[str, list[dict[str, Any]]] | None = None,
    *,
    allow_unequal: bool = False,
) -> list[str]:
    """Notes for the report (empty when all items are equal); raises when they differ, unless allowed.

    Table 1 `models` must hold the reference model's items with the same multiplicity (a model judged on
    several variants counts each item once per variant); each Table 2 line (`lines`, one variant each) must
    hold the same distinct items."""
    differing = []
    for groups, distinct in ((models, False), (lines or {}, True)):
        differing += _differing(groups, _items(models[reference], distinct), reference, distinct)
    if not differing:
        return []
    what = "; ".join(differing)
    if not allow_unequal:
        raise MgaError(f"report: models are judged on different eval items ({what}); compare them on the same "
                       "items, or pass --allow-unequal to report anyway")
    return [f"UNEQUAL ITEM SETS: the models were not judged on the same eval items ({what}). Rates are not "
            f"directly comparable; Diff intervals use only the items both a model and {reference} answered."]


def _differing(groups: dict[str, list[dict[str, Any]]], expected: Counter, reference: str, distinct: bool) -> list[str]:
    differing = []
    for label, rows in groups.items():
        got = _items(rows, distinct)
        if got != expected:
            missing = sum((expected - got).values())
            extra = sum((got - expected).values())
            differing.append(f"{label}: {sum(got.values()):,} items, {missing:,} of {reference}'s missing, {extra:,} others")
    return differing


def add_diffs(summaries: dict[str, dict[str, Any]], loaded: dict[str, list[dict[str, Any]]], reference: str) -> None:
    """Set `diff`, `diff_ci95` and `diff_items` of every summary (None for the reference model)."""
    for name, summary in summaries.items():
        if name == reference:
            summary.update(diff=None, diff_ci95=None, diff_items=None)
            continue
        paired = paired_diff_ci(loaded[name], loaded[reference])
        summary.update(diff=diff_points(summary, summaries[reference]), diff_ci95=paired["ci95"],
                       diff_items=paired["items"], diff_discordant=[paired["only_model"], paired["only_reference"]])


def interval_notes(summaries: dict[str, dict[str, Any]], target_gap: float | None) -> list[str]:
    """One note per model whose Diff interval is wider than `target_gap` points."""
    if not target_gap:
        return []
    notes = []
    for name, s in summaries.items():
        ci, items = s.get("diff_ci95"), s.get("diff_items")
        if not ci or not items:
            continue
        width = ci[1] - ci[0]
        if width > target_gap:
            needed = items_for_width(items, width, target_gap)
            notes.append(f"The Diff of {name} ({s['diff']:+.2f} points, 95% interval [{ci[0]:.2f}, {ci[1]:.2f}]) is "
                         f"measured on {items:,} items: its interval is {width:.2f} points wide, wider than the target "
                         f"gap of {target_gap:.2f}. About {needed:,} eval items would narrow it to that width.")
    return notes


def failure_flags(summaries: dict[str, dict[str, Any]], max_failed_share: float) -> list[str]:
    """Flag lines for models whose failed or unscored rows exceed `max_failed_share` (a fraction)."""
    flags = []
    for name, s in summaries.items():
        share = s["unscored"] / s["total"] if s["total"] else 1.0
        s["failed_share"] = round(share, 4)
        s["flagged"] = share > max_failed_share
        if s["flagged"]:
            flags.append(f"FLAGGED: {name}: {100 * share:.1f}% of its {s['total']:,} rows failed or got no score "
                         f"(limit {100 * max_failed_share:.0f}%); its rates mostly count failures, see Judge health.")
    return flags
