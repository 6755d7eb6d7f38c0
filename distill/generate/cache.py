"""A request cache on SQLite: the answer to every chat call is kept, so reruns and resumed runs are free.

The key is a hash of what determines the answer: the served model's name (not the base_url, so the same
model behind another host or port still hits), the messages, the sampling parameters, the logprobs flag and
the validation attempt index (a retry after a rejected answer is a new request, and a resumed run replays
the same sequence). Each answer is committed as it arrives, in WAL mode: a process killed at any moment
loses no finished answer. Nothing about the endpoint or its key is stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.generate.protocol import Completion, Request

_SCHEMA = "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, answer TEXT NOT NULL)"


def request_key(model: str, request: Request, attempt: int = 0) -> str:
    """sha256 of everything that decides the answer of `request` at validation attempt `attempt`."""
    blob = json.dumps(
        [model, request.messages, request.params.model_dump(mode="json"), bool(request.logprobs), int(attempt)],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    """`get(key) -> Completion | None`, `put(key, completion)`; safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a killed process (only an OS crash can lose the last ones)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise MgaError(f"{self.path}: cannot open the request cache ({e}); delete it to start afresh") from None

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

    def put(self, key: str, completion: Completion, model: str = "") -> None:
        answer = json.dumps(
            {
                "text": completion.text,
                "finish_reason": completion.finish_reason,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "logprobs": completion.logprobs,
            },
            ensure_ascii=False,
        )
        with self._lock:  # autocommit: one transaction per answer, durable as soon as put() returns
            self._db.execute("INSERT OR REPLACE INTO answers (key, model, answer) VALUES (?, ?, ?)", (key, model, answer))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
