"""`teacher.max_budget_usd`: no request is sent that could take the run's spending over the cap.

Before each request its worst case is reserved: the prompt (estimated by `mga.distill.core.tokens`) plus the
`max_tokens` bound, at the recipe's prices (times `batch_price_factor` in batch mode). What the run spent is
what earlier runs recorded in the run's `accounting.json` (requests a crash left in flight at their worst case)
plus what this process has spent so far; when a reservation would go over the cap the run stops with an error
saying what was spent. Answers already received are cached, so the run resumes (paying nothing twice) once the
cap is raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.tokens import estimate_message_tokens
from mga.distill.generate.accounting import read_accounting


class BudgetExceeded(MgaError):
    """The next request could take spending over `teacher.max_budget_usd`."""


def recorded_cost(path: str | Path) -> float:
    """Dollars recorded in an `accounting.json` (0 when there is none yet, or no prices were set), counting
    requests whose outcome is unknown (in flight at a crash) at their worst case: they may have been billed."""
    stages = read_accounting(Path(path)).get("stages", {})
    return float(sum((s.get("cost") or 0.0) + (s.get("in_flight_max_cost") or 0.0)
                     for s in stages.values() if isinstance(s, dict)))


async def within_budget(budget: Budget | None, request: Any, call: Any) -> Any:
    """`await call()` with the request's worst case reserved under `budget` while it is in flight."""
    if budget is None:
        return await call()
    held = budget.reserve(budget.bound(request.messages, request.params.max_tokens))
    try:
        return await call()
    finally:
        budget.release(held)


class Budget:
    """Reserve-then-settle spending cap shared by the requests of one process."""

    def __init__(self, limit_usd: float, accounting: Any, spent_before: float = 0.0, price_factor: float = 1.0):
        self.limit = limit_usd
        self.accounting = accounting
        self.spent_before = spent_before
        self.factor = price_factor
        self.held = 0.0

    @classmethod
    def for_teacher(cls, cfg: Any, accounting: Any, spent_before: float = 0.0) -> Budget | None:
        if cfg.max_budget_usd is None:
            return None
        return cls(cfg.max_budget_usd, accounting, spent_before, cfg.batch_price_factor if cfg.mode == "batch" else 1.0)

    def spent(self) -> float:
        """Dollars spent: earlier runs plus the answers this process has received."""
        now = sum(self.accounting.cost(c) or 0.0 for c in self.accounting.stages.values())
        return self.spent_before + now

    def bound(self, messages: list[dict[str, str]], max_tokens: int) -> float:
        """The most one request can cost."""
        price_in = self.accounting.price_in or 0.0
        price_out = self.accounting.price_out or 0.0
        return (estimate_message_tokens(messages) * price_in + max_tokens * price_out) / 1e6 * self.factor

    def reserve(self, amount: float) -> float:
        spent = self.spent()
        if spent + self.held + amount > self.limit + 1e-12:
            raise BudgetExceeded(
                f"teacher.max_budget_usd=${self.limit:,.4f} reached: ${spent:,.4f} spent so far "
                f"(${self.held:,.4f} more in flight); the next request could cost up to ${amount:,.4f}. "
                "Answers so far are kept: raise teacher.max_budget_usd and rerun to resume"
            )
        self.held += amount
        return amount

    def release(self, amount: float) -> None:
        self.held = max(0.0, self.held - amount)
