"""`evaluate_export`: full vs quantized on the same rows, measured (perplexity, size, speed) and on the task itself.

Everything lands in QUANTIZED/compare.json; `compare_section` renders it for the report, naming the rows that
were used (held-out rows, or training rows when there are none) instead of calling every file "held-out".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mga.distill.core.io import write_json
from mga.distill.core.markdown import records_table
from mga.quantize.evaluate import compare
from mga.quantize.task_checks import (
    JudgeRate,
    PairsCheck,
    eval_rows,
    stage_of,
    task_checks,
)


def evaluate_export(
    full: Path,
    quantized: Path,
    *,
    heldout: Path | None = None,
    stage: str | None = None,
    pairs_check: PairsCheck | None = None,
    judge_rate: JudgeRate | None = None,
    max_rows: int = 32,
    max_new_tokens: int = 256,
) -> dict[str, Any]:
    """compare() plus task checks on the rows `eval_rows` picks; writes and returns QUANTIZED/compare.json."""
    full, quantized = Path(full), Path(quantized)
    rows, rows_used, source = eval_rows(full, heldout)
    result = compare(full, quantized, rows, quantized / "compare.json")
    result["heldout"] = str(source)
    result["rows_used"] = rows_used
    result["task"] = task_checks(full, quantized, rows, quantized, rows_used=rows_used,
                                 stage=stage or stage_of(full, rows, pairs_check), pairs_check=pairs_check,
                                 judge_rate=judge_rate, max_rows=max_rows, max_new_tokens=max_new_tokens)
    write_json(quantized / "compare.json", result)
    return result


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else str(value)


def task_rows(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Task checks as (check, full, quantized) records."""
    rows = []
    if isinstance(task.get("valid_5_pairs"), dict):
        rows.append({"check": "valid JSON, 5 distinct pairs", "full": _pct(task["valid_5_pairs"]["full"]),
                     "quantized": _pct(task["valid_5_pairs"]["quantized"])})
    agree = task.get("agreement") or {}
    rows.append({"check": "greedy answers identical to full", "full": "", "quantized": _pct(agree.get("identical"))})
    rows.append({"check": "greedy token overlap with full", "full": "", "quantized": _pct(agree.get("token_overlap"))})
    stops = task.get("stopped_at_end_of_turn") or {}
    rows.append({"check": "stopped at end-of-turn", "full": _pct(stops.get("full")), "quantized": _pct(stops.get("quantized"))})
    if isinstance(task.get("rate_ge3"), dict):
        rows.append({"check": "judged Rate(>=3)", "full": f"{task['rate_ge3']['full']:.2f}%",
                     "quantized": f"{task['rate_ge3']['quantized']:.2f}%"})
    return rows


def compare_section(path: Path) -> str:
    """compare.json as Markdown: metrics (full, quantized, ratio), task checks, and which rows were used."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    metrics = [m for m in ("perplexity", "total_bytes", "linear_bytes", "load_s", "tokens_per_s") if m in data.get("full", {})]
    text = records_table([{"metric": m, "full": data["full"][m], "quantized": data["quantized"].get(m, ""),
                           "ratio": data.get("ratios", {}).get(m, "")} for m in metrics])
    if data.get("task"):
        text += "\n\n" + records_table(task_rows(data["task"]))
    used = data.get("rows_used") or f"rows from {data.get('heldout', '?')}"
    return text + f"\n\nRows: {data.get('rows', '?')}, {used}."
