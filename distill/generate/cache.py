"""A request cache on SQLite, with the spending ledger in the same file.

`answers`: the answer to every chat call, so reruns and resumed runs are free. The key is a hash of what
determines the answer: the endpoint's identity (`mga.distill.generate.endpoint.cache_scope`: the base_url, or
`teacher.cache_namespace`), the served model's name, the messages, the sampling parameters, the logprobs
flag and the validation attempt index (a retry after a rejected answer is a new request, and a resumed run
replays the same sequence). Nothing about the key is stored.

Structured output (`mga.distill.generate.structured`) is in the key as the parameters carry it: the mode, and
the answer's schema whenever the mode is not `off`. So an answer asked for without a schema is never reused for
a request with one (or with another schema), and caches written before the mode existed, whose requests are
all `off`, keep their keys (`GenerationParams` leaves the new keys out of its dump at their defaults). Under
`auto` the key does not say whether the endpoint honoured the schema: `auto` asks for whatever this endpoint
gives, and the endpoint is in the key.

`spend`: one row per accounting event (requests sent, tokens, cache hits, rejected answers, results) under
an `account` (the run it belongs to: `mga.distill.generate.accounting.run_id`) and a `stage`; a request is
recorded as in flight before it is sent and settled with its answer or failure. A paid answer and its spend row are
committed in ONE transaction (`put(..., spend=...)`, or `write` for several), in WAL mode: a process killed at any moment loses
neither a finished answer nor what it cost. `mga.distill.generate.accounting` sums this table.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError, disk_full, is_disk_full
from mga.distill.generate.protocol import Completion, Request
from mga.distill.generate.structured import wanted

COUNTS = ("requests", "cache_hits", "retries", "invalid", "results", "failures", "prompt_tokens",
          "completion_tokens", "batch_prompt_tokens", "batch_completion_tokens", "in_flight", "in_flight_prompt_tokens",
          "in_flight_completion_tokens", "wall_s")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, answer TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS spend (id INTEGER PRIMARY KEY, account TEXT NOT NULL, stage TEXT NOT NULL, "
    + ", ".join(f"{c} {'REAL' if c == 'wall_s' else 'INTEGER'} NOT NULL DEFAULT 0" for c in COUNTS) + ")",
    "CREATE INDEX IF NOT EXISTS spend_account ON spend (account, stage)",
)
Spend = tuple[str, str, dict[str, Any]]  # (account, stage, counts)


def request_key(model: str, request: Request, attempt: int = 0, endpoint: str = "") -> str:
    """sha256 of everything that decides the answer of `request` at validation attempt `attempt`."""
    parts: list[Any] = [model, request.messages, request.params.model_dump(mode="json"), bool(request.logprobs),
                        int(attempt)]
    if endpoint:
        parts.append(endpoint)
    if wanted(request) is not None:
        parts.append({"schema": request.schema})
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a killed process (only an OS crash can lose the last ones)
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            db.execute(statement)
        have = {row[1] for row in db.execute("PRAGMA table_info(spend)")}
        for column in COUNTS:  # a ledger written before a count existed (batch tokens) gets the column
            if column not in have:
                db.execute(f"ALTER TABLE spend ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        return db
    except sqlite3.DatabaseError as e:
        if is_disk_full(e):
            raise disk_full(path, "the answers and spending records it holds are kept") from None
        raise MgaError(f"{path}: cannot open the request cache ({e}); delete it to start afresh "
                       "(its answers and spending records are lost)") from None


class RequestCache:
    """`get(key)`, `put(key, completion, spend=...)`, `write(answers, spends)`, `totals(account)`;
    safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise MgaError(f"{self.path}: the request cache path is a directory; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MgaError(f"{self.path}: cannot create the cache folder ({e.strerror})") from None
        self._lock = threading.Lock()
        self._db = _connect(self.path)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Completion(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            logprobs=data.get("logprobs"),
            cached=True,
        )

    def put(self, key: str, completion: Completion, model: str = "", *, spend: Spend | None = None) -> None:
        """Store an answer and, in the same transaction, what it cost: durable as soon as put() returns."""
        self.write([(key, completion, model)], [spend] if spend is not None else [])

    def write(self, answers: list[tuple[str, Completion, str]], spends: list[Spend]) -> None:
        """Answers (key, completion, model) and spending events in ONE transaction, durable as soon as write()
        returns: a busy client commits the answers that arrive together at once (`mga.distill.generate.commits`)."""
        rows = [(key, model, json.dumps({"text": c.text, "finish_reason": c.finish_reason,
                                          "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                                          "logprobs": c.logprobs}, ensure_ascii=False))
                for key, c, model in answers]
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany("INSERT OR REPLACE INTO answers (key, model, answer) VALUES (?, ?, ?)", rows)
                    for spend in spends:
                        self._insert_spend(*spend)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as e:
            if is_disk_full(e):
                raise disk_full(self.path, f"the {len(self):,} answers cached before and their spending records are "
                                           "kept") from None
            raise

    def _insert_spend(self, account: str, stage: str, counts: dict[str, Any]) -> None:
        names = [c for c in COUNTS if counts.get(c)]
        self._db.execute(
            f"INSERT INTO spend (account, stage{''.join(', ' + c for c in names)}) "
            f"VALUES (?, ?{', ?' * len(names)})",
            (account, stage, *(counts[c] for c in names)),
        )

    def totals(self, account: str) -> dict[str, dict[str, Any]]:
        """Summed counts per stage of `account`, in the order the stages first spent."""
        query = (f"SELECT stage, {', '.join(f'SUM({c})' for c in COUNTS)} FROM spend WHERE account = ? "
                 "GROUP BY stage ORDER BY MIN(id)")
        with self._lock:
            rows = self._db.execute(query, (account,)).fetchall()
        return {row[0]: dict(zip(COUNTS, row[1:])) for row in rows}

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
