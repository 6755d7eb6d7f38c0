"""Content-keyed resume of a streaming stage: a row is reused only if what produced it is unchanged.

Every output row of a resumable stage records `source_digest` (a digest of its input: the document text,
plus the pair for a rewrite) and `digest` (a digest of everything that produced it: the rendered prompt,
the generation parameters, the model). On a rerun a row is kept only if the current input has a job with
the same key and the same `digest`; a changed row is redone, a row whose source left the input is dropped,
and a row that failed without an answer is asked again. An output that holds none of the current input's
documents (no row with a matching key and `source_digest`) belongs to another input: it is refused, unless
`overwrite` starts it afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, stream_path, write_rows

Key = Callable[[dict[str, Any]], str]


def content_digest(*parts: Any) -> str:
    """A stable digest of JSON-able parts (texts, messages, parameters, names)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


@dataclass
class Resumed:
    """Where to append, which keys are done, and what the rerun changed."""

    stream: Path
    done: set[str] = field(default_factory=set)
    changed: int = 0  # rows redone because their input, prompt, parameters or model changed
    gone: int = 0  # rows dropped because their source left the input
    retried: int = 0  # rows that failed without an answer, asked again

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.changed, "changed"), (self.gone, "gone from the input"),
                                                (self.retried, "failed before, asked again")) if n]
        return f" ({', '.join(parts)})" if parts else ""


def _key_or_none(key: Key, row: dict[str, Any]) -> str | None:
    try:
        return key(row)
    except (KeyError, TypeError):
        return None


def resume_stream(
    out_path: Path,
    key: Key,
    expected: dict[str, str],
    sources: dict[str, str] | None,
    *,
    overwrite: bool = False,
    retry: Callable[[dict[str, Any]], bool] | None = None,
    digest_of: Callable[[dict[str, Any]], str | None] = lambda row: row.get("digest"),
) -> Resumed:
    """Open `out_path`'s stream for a rerun keyed by content (see the module docstring).

    `expected`: key -> digest of each job; `sources`: key -> source digest (None: no check for another
    input); `retry(row)`: rows to redo anyway; `digest_of(row)`: where a row keeps its digest."""
    stream = stream_path(out_path)
    if overwrite:
        stream.unlink(missing_ok=True)
        return Resumed(stream)
    if stream != out_path and not stream.exists() and out_path.exists():
        write_rows(stream, iter_rows(out_path))  # resume from a finished Parquet output
    rows = list(iter_rows(stream)) if stream.exists() else []
    if rows and sources is not None and not any(sources.get(_key_or_none(key, r) or "") == r.get("source_digest") for r in rows):
        why = ("rows without content digests (written by an older version)" if not any("source_digest" in r for r in rows)
               else "rows of another input (none matches a document of this input)")
        raise MgaError(f"{out_path}: holds {len(rows)} {why}: choose another output, or pass --overwrite to redo it")
    resumed, kept = Resumed(stream), {}
    for row in rows:
        k = _key_or_none(key, row)
        if k is None or k not in expected:
            resumed.gone += 1
        elif digest_of(row) != expected[k]:
            resumed.changed += 1
        elif retry is not None and retry(row):
            resumed.retried += 1
        else:
            kept.setdefault(k, row)
    if len(kept) != len(rows):
        write_rows(stream, kept.values())  # atomically: stale rows never mix with new ones
    resumed.done = set(kept)
    return resumed
