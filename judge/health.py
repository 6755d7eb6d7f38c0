"""Judge health: is the judge following the format, and does it agree with the reference scores?

Per model (or Table 2 line): the unscored share, split into rows whose rewrite failed (no judge call) and
rows whose judge answers could not be parsed after every re-ask, and counted by reason (`unscored_reasons`:
the parser's or the failed rewrite's reason, by kind, `mga.distill.core.reasons`); the parse re-asks spent;
and, when the rows include reference-set rewrites with hand-assigned scores, the judge's agreement with those scores.
A judge that cannot follow the format so shows up as a number, not as missing rows.
"""

from __future__ import annotations

from typing import Any

from mga.distill.core.markdown import records_table
from mga.distill.core.reasons import count_reasons, reasons_line
from mga.distill.core.schema import rewrite_key, score_of, unjudgeable_reason


def reference_key(row: dict[str, Any]) -> str:
    """A rewrite's identity for reference agreement: its item and its very text (another model's answer to
    the same item is not the reference rewrite)."""
    return f"{rewrite_key(row)}\n{row.get('content_split') or ''}"


def model_health(rows: list[dict[str, Any]], reference_scores: dict[str, int] | None = None) -> dict[str, Any]:
    """Counts for one model's judged rows; `reference_scores` maps `reference_key` to a hand-assigned score."""
    total = len(rows)
    unscored = [row for row in rows if score_of(row) is None]
    generation_failed = sum(1 for row in unscored if unjudgeable_reason(row))
    attempts = [int((row.get("judge") or {}).get("attempts") or 1) for row in rows]
    health: dict[str, Any] = {
        "total": total,
        "unscored": len(unscored),
        "unscored_share": round(100 * len(unscored) / total, 2) if total else 0.0,
        "generation_failed": generation_failed,
        "judge_unparsed": len(unscored) - generation_failed,
        "parse_reasks": sum(max(a - 1, 0) for a in attempts),
        "rows_reasked": sum(1 for a in attempts if a > 1),
        # why rows are unscored, by kind (mga.distill.core.reasons): the judge's parser or the failed rewrite
        "unscored_reasons": count_reasons((row.get("judge") or {}).get("reason") for row in unscored),
        "reference_items": 0,
    }
    if reference_scores:
        from mga.judge.calibrate import agreement

        matched = [(reference_scores[reference_key(row)], score_of(row)) for row in rows
                   if reference_key(row) in reference_scores]
        if matched:
            result = agreement([r for r, _ in matched], [j for _, j in matched])
            health.update(reference_items=result["n"], reference_exact=round(100 * result["exact"], 1),
                          reference_within_1=round(100 * result["within_1"], 1), reference_spearman=result["spearman"])
    return health


def judge_health(groups: dict[str, list[dict[str, Any]]], reference_scores: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """`model_health` for every model or Table 2 line (label -> judged rows)."""
    return {label: model_health(rows, reference_scores) for label, rows in groups.items()}


def health_records(health: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per model; other parts (judge controls) may add columns to these records."""
    records = []
    for label, h in health.items():
        record = {"model": label, "rows": f"{h['total']:,}", "unscored": f"{h['unscored_share']:.2f}%",
                  "rewrite failed": f"{h['generation_failed']:,}", "judge answer unparsed": f"{h['judge_unparsed']:,}",
                  "parse re-asks": f"{h['parse_reasks']:,} ({h['rows_reasked']:,} rows)"}
        if any(x.get("unscored_reasons") for x in health.values()):
            record["unscored by reason"] = reasons_line(h.get("unscored_reasons") or {})
        if any(x["reference_items"] for x in health.values()):
            record["agreement with reference (exact / ±1)"] = (
                f"{h['reference_exact']:.1f}% / {h['reference_within_1']:.1f}% of {h['reference_items']}"
                if h["reference_items"] else "")
        records.append(record)
    return records


def health_section(health: dict[str, dict[str, Any]], records: list[dict[str, Any]] | None = None) -> str:
    """The report's "Judge health" section (Markdown) from `judge_health` (or from records extended by others)."""
    body = records_table(records if records is not None else health_records(health))
    return (body + "\n\nUnscored rows count as failures in every rate. \"rewrite failed\": the model produced no "
            "usable rewrite (no judge call); \"judge answer unparsed\": every judge answer was refused by the parser "
            "after its re-asks (`judge.max_parse_attempts`); \"unscored by reason\": the unscored rows by the reason "
            "their judge record gives, its particulars (numbers, quoted text) left out.")
