"""Sets and row indexes kept on disk (SQLite), so that resume state and duplicate checks need no memory
proportional to the corpus.

`DiskSet` answers "seen this id before?" over millions of ids. `RowIndex` maps the key of every row of an
append-only JSONL stream to its byte offset: a resumed stage asks it which rows exist, and a later pass reads
a row by key with one seek. The stream stays the truth; the index follows it by scanning only the bytes
appended since its last scan, and rebuilds itself when the stream was replaced or cut.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CACHE_KIB = 8 * 1024  # SQLite page cache per index: bounded, whatever the number of keys
_CHECK_BYTES = 64


def _connect(path: Path | str, durable: bool) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    if not durable:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
    return db


class DiskSet:
    """A set of strings in a temporary SQLite file (deleted on close): `add(key)` is True when new; each key
    can keep a value from its first `add` (`first(key)` returns it)."""

    def __init__(self, folder: Path | None = None):
        self._dir = tempfile.TemporaryDirectory(prefix=".mga-set-", dir=folder)
        self._db = _connect(Path(self._dir.name) / "set.sqlite", durable=False)
        self._db.execute("CREATE TABLE keys (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")

    def add(self, key: str, value: str = "") -> bool:
        return self._db.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", (key, value)).rowcount == 1

    def first(self, key: str) -> str | None:
        found = self._db.execute("SELECT value FROM keys WHERE key = ?", (key,)).fetchone()
        return found[0] if found else None

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> DiskSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RowIndex:
    """key -> byte offset of each row of a JSONL stream (the first row of a key wins). `name` tells apart
    indexes of one stream under different keys."""

    def __init__(self, stream: Path, key: Callable[[dict[str, Any]], str], name: str = "index"):
        self.stream = Path(stream)
        self._key = key
        self.path = self.stream.with_name(f".{self.stream.name}.{name}.sqlite")
        self._db = _connect(self.path, durable=False)  # rebuilt from the stream whenever in doubt
        self._db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, offset INTEGER)")
        self._db.execute("CREATE TABLE IF NOT EXISTS scan (id INTEGER PRIMARY KEY, scanned INTEGER, tail BLOB)")
        self._reader = None
        self.refresh()

    def _scanned(self) -> tuple[int, bytes]:
        row = self._db.execute("SELECT scanned, tail FROM scan WHERE id = 0").fetchone()
        return (row[0], row[1]) if row else (0, b"")

    def refresh(self) -> int:
        """Index the rows appended since the last scan (all of them if the stream changed); rows now indexed."""
        size = self.stream.stat().st_size if self.stream.exists() else 0
        scanned, tail = self._scanned()
        with open(self.stream, "ab+") as f:  # created empty when missing
            if scanned:
                f.seek(max(0, scanned - _CHECK_BYTES))
                if scanned > size or f.read(min(scanned, _CHECK_BYTES)) != tail:
                    self._db.execute("DELETE FROM rows")
                    scanned = 0
            f.seek(scanned)
            offset = scanned
            batch: list[tuple[str, int]] = []
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn last line: the appender cuts it before writing
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if isinstance(row, dict):
                    batch.append((self._key(row), offset))
                offset += len(line)
                if len(batch) >= 4096:
                    self._db.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?)", batch)
                    batch = []
            self._db.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?)", batch)
            f.seek(max(0, offset - _CHECK_BYTES))
            tail = f.read(min(offset, _CHECK_BYTES))
        self._db.execute("INSERT OR REPLACE INTO scan VALUES (0, ?, ?)", (offset, tail))
        self._db.commit()
        self._close_reader()
        return len(self)

    def key_of(self, row: dict[str, Any]) -> str:
        """The key this index files `row` under."""
        return self._key(row)

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM rows WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def get(self, key: str) -> dict[str, Any] | None:
        """The row stored under `key` (one seek into the stream), or None."""
        found = self._db.execute("SELECT offset FROM rows WHERE key = ?", (key,)).fetchone()
        if found is None:
            return None
        if self._reader is None:
            self._reader = open(self.stream, "rb")
        self._reader.seek(found[0])
        return json.loads(self._reader.readline())

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        self._close_reader()
        self._db.close()

    def __enter__(self) -> RowIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
