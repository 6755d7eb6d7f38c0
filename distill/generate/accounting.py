"""What a stage cost: requests, cache hits, retries, failures, tokens, wall time and money, per stage.

Counters live in memory while a stage runs and are written to `<run_dir>/accounting.json`, merged with what
earlier runs wrote there: a resumed or repeated stage adds only what it spent itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mga.distill.core.io import write_json
from rich.table import Table

_COUNTS = ("requests", "cache_hits", "retries", "invalid", "results", "failures", "prompt_tokens", "completion_tokens")


@dataclass
class StageCounters:
    """Counts of one stage. Tokens count sent requests only (what was paid for), not cache hits."""

    requests: int = 0  # HTTP calls sent, retries included
    cache_hits: int = 0  # answers served from the cache
    retries: int = 0  # calls repeated after a rate limit, server error, timeout or dropped connection
    invalid: int = 0  # answers rejected by validation (each triggers a new request, up to the cap)
    results: int = 0  # requests finished (ok or failed)
    failures: int = 0  # requests that ended with an error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0

    def add(self, other: dict[str, Any]) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + other.get(f.name, 0))

    def minus(self, other: dict[str, Any]) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) - other.get(f.name, 0) for f in fields(self)}


class Accounting:
    """Per-stage counters with an optional price per million prompt/completion tokens."""

    def __init__(self, price_input_per_million: float | None = None, price_output_per_million: float | None = None):
        self.price_in = price_input_per_million
        self.price_out = price_output_per_million
        self.stages: dict[str, StageCounters] = {}
        self._written: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_teacher(cls, teacher: Any) -> Accounting:
        return cls(teacher.price_input_per_million, teacher.price_output_per_million)

    def stage(self, name: str) -> StageCounters:
        return self.stages.setdefault(name, StageCounters())

    def cost(self, counters: StageCounters | dict[str, Any]) -> float | None:
        if self.price_in is None and self.price_out is None:
            return None
        c = asdict(counters) if isinstance(counters, StageCounters) else counters
        return c["prompt_tokens"] / 1e6 * (self.price_in or 0.0) + c["completion_tokens"] / 1e6 * (self.price_out or 0.0)

    def write(self, path: str | Path) -> Path:
        """Add this run's counts (since the last write) to the stages already recorded in `path`."""
        path = Path(path)
        merged: dict[str, Any] = {}
        if path.exists():
            try:
                merged = json.loads(path.read_text(encoding="utf-8")).get("stages", {})
            except (json.JSONDecodeError, AttributeError):
                merged = {}
        for name, counters in self.stages.items():
            total = StageCounters()
            total.add({k: v for k, v in merged.get(name, {}).items() if k in StageCounters.__dataclass_fields__})
            total.add(counters.minus(self._written.get(name, {})))
            merged[name] = {**asdict(total), "cost": self.cost(total)}
            self._written[name] = asdict(counters)
        return write_json(path, {"stages": merged, "prices_per_million": {"input": self.price_in, "output": self.price_out}})

    def table(self, title: str = "teacher accounting") -> Table:
        """One column per stage, one row per counter (fits a narrow terminal)."""
        table = Table(title=title)
        table.add_column("")
        for name in self.stages:
            table.add_column(name, justify="right")
        for key in _COUNTS:
            table.add_row(key.replace("_", " "), *(f"{getattr(c, key):,}" for c in self.stages.values()))
        table.add_row("wall s", *(f"{c.wall_s:,.1f}" for c in self.stages.values()))
        costs = [self.cost(c) for c in self.stages.values()]
        table.add_row("cost", *("-" if cost is None else f"${cost:,.4f}" for cost in costs))
        return table
