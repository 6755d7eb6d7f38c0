"""What a stage cost: requests, cache hits, retries, rejected answers, failures, tokens, wall time and money.

Two records. In memory, `StageCounters` per stage count what this process did (the table printed at the
end). On disk, when the accounting has a `path` (`<run_dir>/accounting.json`), every event also goes to the
spending ledger in the request cache (`RequestCache.write`: a paid answer's spend row in the same transaction
as the answer), under the account of the folder: the run's own id, kept in `<run_dir>/run-id` (so a copied or
moved folder keeps its history; a folder written before ids existed keeps the id it had, its path).
`write()` then derives `accounting.json` from the ledgers: every stage of every run into that file, also
the ones a kill -9 cut short. The ledger files an account drew from are listed in `accounting.json`
(relative to the folder when inside it), so a later run finds them all.

A request is recorded as sent (`in_flight`, with the most it can cost) before it is sent, and settled in the
transaction that records its answer or failure: after a crash, `accounting.json` holds the exact spend of
every answered request plus the number and the worst-case cost (`in_flight_max_cost`) of the requests whose
outcome is unknown (an endpoint may have answered, and billed, them).

Without a path (tests, libraries), `write(path)` adds this process's counts to what the file holds.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.generate.cache import RequestCache
from mga.distill.core.tokens import estimate_message_tokens
from rich.table import Table

_COUNTS = ("requests", "cache_hits", "retries", "invalid", "results", "failures", "prompt_tokens", "completion_tokens")
_LABELS = {"invalid": "rejected answers"}


@dataclass
class StageCounters:
    """Counts of one stage. Tokens count sent requests only (what was paid for), not cache hits."""

    requests: int = 0  # HTTP calls answered or failed, retries included (calls in flight at a kill are not)
    cache_hits: int = 0  # answers served from the cache
    retries: int = 0  # calls repeated after a rate limit, server error, timeout or dropped connection
    invalid: int = 0  # paid answers rejected by validation (each triggers a new request, up to the cap)
    results: int = 0  # requests finished (ok or failed)
    failures: int = 0  # requests that ended with an error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    batch_prompt_tokens: int = 0  # the part of prompt_tokens billed at the Batch API price
    batch_completion_tokens: int = 0  # the part of completion_tokens billed at the Batch API price
    in_flight: int = 0  # calls sent and not settled (answered or failed): in flight, or lost to a crash
    in_flight_prompt_tokens: int = 0  # their prompts, estimated as the budget does
    in_flight_completion_tokens: int = 0  # their max_tokens bounds
    wall_s: float = 0.0

    def add(self, other: dict[str, Any]) -> None:
        """Add the counts of `other` (a generator's event, or a stage read from a file: other keys are ignored)."""
        for name, value in other.items():
            if value and name in _FIELDS:
                setattr(self, name, getattr(self, name) + value)

    def minus(self, other: dict[str, Any]) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) - other.get(f.name, 0) for f in fields(self)}


_FIELDS = frozenset(f.name for f in fields(StageCounters))


def read_accounting(path: Path) -> dict[str, Any]:
    """An accounting file's content; a corrupt one is an error naming it, never silently reset."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise ValueError("not an object with 'stages'")
        return data
    except (ValueError, UnicodeDecodeError) as e:
        raise MgaError(f"{path}: corrupt accounting file ({e.__class__.__name__}: {e}); fix or delete it "
                       "(it is rebuilt from the spending ledger in the request cache)") from None


def in_flight(request: Any) -> dict[str, int]:
    """The counts of one call sent and not yet settled: one request, its estimated prompt (as the budget estimates
    it), its max_tokens."""
    return {"in_flight": 1, "in_flight_prompt_tokens": estimate_message_tokens(request.messages),
            "in_flight_completion_tokens": request.params.max_tokens}


RUN_ID = "run-id"


def run_id(folder: Path) -> str:
    """The id of the run (or output folder) `folder`, kept in its `run-id` file, made on first use: a new id,
    or for a folder whose accounting.json predates ids, the account it had (that file's absolute path)."""
    path = folder / RUN_ID
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    legacy = folder / "accounting.json"
    made = str(legacy.resolve()) if legacy.exists() else uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUN_ID}.tmp")
    tmp.write_text(made + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return made


class StageAccount:
    """The hooks a generator calls for one stage: counts go to memory and, when the accounting is durable
    and the generator has a cache, to the ledger. `answered` commits a paid answer with its cost."""

    def __init__(self, counters: StageCounters, stage: str, cache: RequestCache | None, account: str | None):
        self.counters, self.stage = counters, stage
        self._ledger = cache if account is not None else None
        self._cache, self._account = cache, account

    def count(self, **counts: Any) -> None:
        """An event without an answer (a failed attempt, a cache hit, a result, a rejection)."""
        self.write_many([(None, None, "", counts)])

    def answered(self, key: str | None, completion: Any, model: str, **counts: Any) -> None:
        """A paid answer: cached (when there is a key) and counted in one transaction."""
        self.write_many([(key, completion, model, counts)])

    def _caches(self, key: str | None, completion: Any) -> bool:
        return completion is not None and key is not None and self._cache is not None

    def on_disk(self, key: str | None, completion: Any) -> bool:
        """Whether write_many writes this event to disk (an answer to cache, or a ledger), not only counts it."""
        return self._ledger is not None or self._caches(key, completion)

    def write_many(self, events: list[tuple[str | None, Any, str, dict[str, Any]]]) -> None:
        """Events (key, completion, model, counts): counted, then written in ONE transaction (`persist`)."""
        for *_, counts in events:
            self.counters.add(counts)
        self.persist(events)

    def persist(self, events: list[tuple[str | None, Any, str, dict[str, Any]]]) -> None:
        """The disk part of counted events, in ONE transaction: a paid answer (a completion) is cached under its
        key with its cost; an event without an answer goes to the ledger only."""
        answers, spends = [], []
        for key, completion, model, counts in events:
            if self._caches(key, completion):
                answers.append((key, completion, model))
            if self._ledger is not None:
                spends.append((self._account, self.stage, counts))
        if self._cache is not None and (answers or spends):  # the ledger, when there is one, is the cache's file
            self._cache.write(answers, spends)


class Accounting:
    """Per-stage counters with an optional price per million prompt/completion tokens; durable with `path`."""

    def __init__(
        self,
        price_input_per_million: float | None = None,
        price_output_per_million: float | None = None,
        path: str | Path | None = None,
        batch_price_factor: float = 0.5,
    ):
        self.price_in = price_input_per_million
        self.price_out = price_output_per_million
        self.batch_factor = batch_price_factor
        self.endpoints: dict[str, dict[str, int]] = {}  # per endpoint of a pool (mga.distill.generate.pool)
        self._endpoints_written: dict[str, dict[str, int]] = {}
        self.path = Path(path) if path is not None else None
        self.stages: dict[str, StageCounters] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._ledgers: dict[Path, RequestCache] = {}
        self.run_id: str | None = None
        if self.path is not None:
            read_accounting(self.path)  # refuse a corrupt file before any money is spent
            self.run_id = run_id(self.path.parent)

    @classmethod
    def for_teacher(cls, teacher: Any, path: str | Path | None = None) -> Accounting:
        return cls(teacher.price_input_per_million, teacher.price_output_per_million, path, teacher.batch_price_factor)

    @property
    def account(self) -> str | None:
        return self.run_id

    def stage(self, name: str) -> StageCounters:
        return self.stages.setdefault(name, StageCounters())

    def for_stage(self, name: str, cache: RequestCache | None) -> StageAccount:
        """The hooks for a generator of stage `name` whose answers go to `cache` (its ledger)."""
        if cache is not None and self.path is not None and cache.path.resolve() not in self._ledgers:
            self._ledgers[cache.path.resolve()] = cache
            self.write()  # the file names the ledger from now on: a killed run's spending is found again
        return StageAccount(self.stage(name), name, cache, self.account)

    def cost(self, counters: StageCounters | dict[str, Any]) -> float | None:
        if self.price_in is None and self.price_out is None:
            return None
        c = asdict(counters) if isinstance(counters, StageCounters) else counters
        price_in, price_out = self.price_in or 0.0, self.price_out or 0.0
        batch_in, batch_out = c.get("batch_prompt_tokens") or 0, c.get("batch_completion_tokens") or 0
        online = (c["prompt_tokens"] - batch_in) * price_in + (c["completion_tokens"] - batch_out) * price_out
        return (online + (batch_in * price_in + batch_out * price_out) * self.batch_factor) / 1e6

    def in_flight_cost(self, counters: StageCounters | dict[str, Any]) -> float | None:
        """The most the calls in flight (outcome unknown) can cost, at online prices."""
        c = asdict(counters) if isinstance(counters, StageCounters) else counters
        if self.price_in is None and self.price_out is None:
            return None
        return (c["in_flight_prompt_tokens"] * (self.price_in or 0.0)
                + c["in_flight_completion_tokens"] * (self.price_out or 0.0)) / 1e6

    def _ledger_paths(self, old: dict[str, Any]) -> list[Path]:
        """The ledgers `accounting.json` lists, where they are now: relative to its folder, or absolute; an
        absolute path inside the folder where the file was written (a moved or copied folder) is mapped here."""
        assert self.path is not None
        folder = self.path.parent.resolve()
        written_in = old.get("folder") or (str(Path(self.run_id).parent) if os.path.isabs(self.run_id or "") else None)
        paths = []
        for recorded in old.get("ledgers", []):
            path = Path(recorded)
            if written_in is not None and path.is_absolute() and path.is_relative_to(written_in):
                path = path.relative_to(written_in)
            paths.append((folder / path).resolve())
        return paths

    def _from_ledgers(self, old: dict[str, Any]) -> tuple[dict[str, StageCounters], list[str]]:
        totals: dict[str, StageCounters] = {}
        paths = list(dict.fromkeys([*self._ledger_paths(old), *self._ledgers]))
        for path in paths:
            cache = self._ledgers.get(path)
            if cache is None:
                if not path.is_file():
                    continue  # a deleted cache takes its records with it
                cache = RequestCache(path)
            for stage, counts in cache.totals(self.account).items():
                totals.setdefault(stage, StageCounters()).add(counts)
            if path not in self._ledgers:
                cache.close()
        folder = self.path.parent.resolve()
        return totals, [str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p) for p in paths]

    def write(self, path: str | Path | None = None) -> Path:
        """Durable: `accounting.json` derived from the ledgers. Otherwise: add this run's counts (since the
        last write) to the stages already recorded in `path`."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise MgaError("accounting: no file to write to")
        old = read_accounting(target)
        prices = {"input": self.price_in, "output": self.price_out}
        if self.path is not None and target.resolve() == self.path.resolve():
            totals, ledgers = self._from_ledgers(old)
            stages = {name: {**asdict(c), "cost": self.cost(c), "in_flight_max_cost": self.in_flight_cost(c)}
                      for name, c in totals.items()}
            return write_json(target, {"run_id": self.run_id, "stages": stages, "prices_per_million": prices,
                                       "ledgers": ledgers, "folder": str(self.path.parent.resolve()),
                                       **self._endpoint_section(old)})
        merged: dict[str, Any] = dict(old.get("stages", {}))
        for name, counters in self.stages.items():
            total = StageCounters()
            total.add({k: v for k, v in merged.get(name, {}).items() if k in StageCounters.__dataclass_fields__})
            total.add(counters.minus(self._written.get(name, {})))
            merged[name] = {**asdict(total), "cost": self.cost(total)}
            self._written[name] = asdict(counters)
        return write_json(target, {"stages": merged, "prices_per_million": prices, **self._endpoint_section(old)})

    def _endpoint_section(self, old: dict[str, Any]) -> dict[str, Any]:
        """Per-endpoint counts of a pool: what the file holds plus this process's since the last write."""
        merged: dict[str, dict[str, int]] = {k: dict(v) for k, v in (old.get("endpoints") or {}).items()}
        for name, counts in self.endpoints.items():
            before = self._endpoints_written.get(name, {})
            total = merged.setdefault(name, {})
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value - before.get(key, 0)
            self._endpoints_written[name] = dict(counts)
        return {"endpoints": merged} if merged else {}

    def table(self, title: str = "teacher accounting") -> Table:
        """One column per stage, one row per counter (fits a narrow terminal): what this process did."""
        table = Table(title=title)
        table.add_column("")
        for name in self.stages:
            table.add_column(name, justify="right")
        for key in _COUNTS:
            label = _LABELS.get(key, key.replace("_", " "))
            table.add_row(label, *(f"{getattr(c, key):,}" for c in self.stages.values()))
        table.add_row("wall s", *(f"{c.wall_s:,.1f}" for c in self.stages.values()))
        costs = [self.cost(c) for c in self.stages.values()]
        table.add_row("cost", *("-" if cost is None else f"${cost:,.4f}" for cost in costs))
        return table
