"""Markdown tables, one renderer for every report and summary the toolkit writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def records_table(rows: Sequence[dict[str, Any]]) -> str:
    """A table of records (one column per key of the first record), `(none)` for no records."""
    if not rows:
        return "(none)"
    header = list(rows[0])
    return markdown_table(header, [[row.get(c, "") for c in header] for row in rows])
