"""What a stage would cost before it runs: requests (cache hits excluded), tokens, dollars and wall time.

Input tokens are counted by `mga.distill.core.tokens`: with a local tokenizer when one is given
(`corpus.tokenizer`), else estimated (and said to be an estimate). Output tokens are given twice: the `max_tokens`
bound (what a budget must allow) and an expected figure (the mean of the stage's answers already cached
when there are some, else the caller's guess). Cost is at the recipe's prices (times `batch_price_factor`
in batch mode); wall time is the number of waves of `concurrency x endpoints` requests times `--latency`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mga.distill.core.config import TeacherConfig
from mga.distill.core.tokens import TokenCounter
from mga.distill.generate.cache import RequestCache, request_key
from mga.distill.generate.endpoint import cache_scope
from mga.distill.generate.protocol import Request


@dataclass
class StageEstimate:
    stage: str
    requests: int = 0  # requests that would be sent (first attempts)
    max_requests: int = 0  # with every validation retry
    cache_hits: int = 0
    input_tokens: int = 0
    output_bound: int = 0  # sum of max_tokens
    output_expected: int = 0
    cost_bound: float | None = None
    cost_expected: float | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def estimate_stage(
    stage: str,
    requests: Iterable[Request],
    teacher: TeacherConfig,
    *,
    cache: RequestCache | None,
    count: TokenCounter,
    latency_s: float,
    expected_output: Callable[[Request], int],
    max_attempts: int = 1,
    price_factor: float | None = None,
    seen: set[str] | None = None,
) -> StageEstimate:
    """The estimate of one stage's requests; a request whose answer is cached costs nothing, nor does one
    already counted (`seen`: shared by the stages of one run, whose later stages hit the cache)."""
    est = StageEstimate(stage)
    cached_out: list[int] = []
    todo: list[Request] = []
    seen = set() if seen is None else seen
    for request in requests:
        key = request_key(teacher.model, request, 0, cache_scope(teacher))
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            est.cache_hits += 1
            cached_out.append(hit.completion_tokens)
        elif key in seen:  # the same prompt again: answered once, then from the cache
            est.cache_hits += 1
        else:
            seen.add(key)
            todo.append(request)
    mean_cached = sum(cached_out) / len(cached_out) if cached_out else None
    for request in todo:
        est.requests += 1
        est.input_tokens += count.messages(request.messages)
        bound = request.params.max_tokens
        est.output_bound += bound
        guess = mean_cached if mean_cached is not None else expected_output(request)
        est.output_expected += min(bound, int(round(guess)))
    est.max_requests = est.requests * max(1, max_attempts)
    factor = price_factor if price_factor is not None else (teacher.batch_price_factor if teacher.mode == "batch" else 1.0)
    if teacher.price_input_per_million is not None or teacher.price_output_per_million is not None:
        price_in, price_out = teacher.price_input_per_million or 0.0, teacher.price_output_per_million or 0.0
        est.cost_bound = (est.input_tokens * price_in + est.output_bound * price_out) / 1e6 * factor
        est.cost_expected = (est.input_tokens * price_in + est.output_expected * price_out) / 1e6 * factor
    lanes = teacher.concurrency * max(1, len(teacher.base_urls))
    est.wall_s = math.ceil(est.requests / lanes) * latency_s if est.requests else 0.0
    if not count.exact and est.requests:
        est.notes.append("input tokens estimated (words and punctuation; set corpus.tokenizer to count)")
    if mean_cached is None and est.requests:
        est.notes.append("expected output is a guess (no cached answer of this stage yet)")
    if teacher.mode == "batch" and est.requests:
        est.notes.append(f"batch mode: cost x{factor:g}; answers within {teacher.batch_completion_window}")
    return est


def estimate_table(estimates: list[StageEstimate], title: str = "dry run: nothing was sent") -> Any:
    """A rich table, one row per stage, with a total."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("stage", no_wrap=True)
    for name in ("requests", "max w/ retries", "cached", "input tok", "output tok (max)", "output tok (expected)",
                 "cost (max)", "cost (expected)", "wall"):
        table.add_column(name, justify="right")

    def money(value: float | None) -> str:
        return "-" if value is None else f"${value:,.4f}"

    def add(e: StageEstimate, style: str | None = None) -> None:
        table.add_row(e.stage, f"{e.requests:,}", f"{e.max_requests:,}", f"{e.cache_hits:,}", f"{e.input_tokens:,}",
                      f"{e.output_bound:,}", f"{e.output_expected:,}", money(e.cost_bound), money(e.cost_expected),
                      f"{e.wall_s:,.0f}s", style=style)

    for e in estimates:
        add(e)
    total = StageEstimate("total")
    for e in estimates:
        for key in ("requests", "max_requests", "cache_hits", "input_tokens", "output_bound", "output_expected", "wall_s"):
            setattr(total, key, getattr(total, key) + getattr(e, key))
    costs = [e for e in estimates if e.cost_bound is not None]
    if costs:
        total.cost_bound = sum(e.cost_bound or 0.0 for e in costs)
        total.cost_expected = sum(e.cost_expected or 0.0 for e in costs)
    add(total, style="bold")
    return table
