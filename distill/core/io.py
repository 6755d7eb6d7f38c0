"""Plain-file I/O shared by every stage: rows in JSONL or Parquet, atomic writes, crash-safe appends.

A stage reads rows (dicts) and writes rows. Final files are written atomically (temp file + rename), so a
crash never leaves a half-written output; streaming outputs go through `JsonlAppender`, which writes whole
lines only and drops a torn last line left by a killed process.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError

FORMATS = (".jsonl", ".json", ".parquet")


def _check_format(path: Path) -> None:
    if path.suffix not in FORMATS:
        raise MgaError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl or .parquet)")


def check_input(path: str | Path, what: str = "input") -> Path:
    """An existing, readable, non-empty rows file of a supported type, or one `MgaError` naming it."""
    path = Path(path)
    if not path.exists():
        raise MgaError(f"{path}: {what} file not found")
    if path.is_dir():
        raise MgaError(f"{path}: {what} is a directory; give a .jsonl or .parquet file")
    _check_format(path)
    if not os.access(path, os.R_OK):
        raise MgaError(f"{path}: {what} file is not readable (permissions)")
    if path.stat().st_size == 0:
        raise MgaError(f"{path}: {what} file is empty")
    return path


def check_output(
    path: str | Path, inputs: Iterable[str | Path | None] = (), what: str = "output", folder: bool = False, rows: bool = True
) -> Path:
    """An output path that can be written: not an input, not a directory (or not a file, for a `folder`), a
    rows file type (`rows`), under a folder that exists or can be created; one `MgaError` naming it otherwise."""
    path = Path(path)
    for source in inputs:
        if source is not None and Path(source).exists() and path.resolve() == Path(source).resolve():
            raise MgaError(f"{path}: the {what} is the input file; give another {what} path")
    if folder:
        if path.exists() and not path.is_dir():
            raise MgaError(f"{path}: the {what} folder is an existing file")
    else:
        if path.is_dir():
            raise MgaError(f"{path}: the {what} is a directory; give a file path")
        if rows:
            _check_format(path)
    parent = path if folder else path.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise MgaError(f"{path}: cannot create the {what}: {ancestor} is a file, not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise MgaError(f"{path}: cannot create the {what}: {ancestor} is not writable")
            break
    return path


def require_fields(path: str | Path, kind: str, *fields: str) -> None:
    """Refuse a file whose first row lacks a field (dotted: `meta.raw_text`) of the row kind a command reads."""
    first = next(iter_rows(path), None)
    if first is None:
        raise MgaError(f"{path}: no rows")
    for name in fields:
        node: Any = first
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise MgaError(f"{path}: not a {kind} file (row 1 has no `{name}`)")


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    """A record batch at a time: memory does not grow with the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise MgaError(f"{path}: not a readable Parquet file ({e.__class__.__name__}: {str(e)[:200]})") from None


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield rows of a JSONL or Parquet file; a torn final JSONL line (killed writer) is skipped."""
    path = Path(path)
    _check_format(path)
    if not path.exists():
        raise MgaError(f"{path}: file not found")
    if path.is_dir():
        raise MgaError(f"{path}: is a directory, not a .jsonl or .parquet file")
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    with open(path, "rb") as f:  # line by line: memory does not grow with the file
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if not raw.endswith(b"\n"):  # torn last line without newline: the writer was killed
                    continue
                raise MgaError(f"{path}:{number}: not a JSON row ({e.__class__.__name__}: {e})") from None
            if not isinstance(row, dict):
                raise MgaError(f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}")
            yield row


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_rows(path))


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write all rows at once, atomically; the format follows the extension (.jsonl or .parquet)."""
    path = Path(path)
    _check_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if path.suffix == ".parquet":
            from datasets import Dataset
            from datasets.utils.logging import disable_progress_bar

            disable_progress_bar()
            os.close(fd)
            Dataset.from_list(list(rows)).to_parquet(tmp)
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write one JSON document (manifests, accounting, metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


class JsonlAppender:
    """Append rows to a JSONL file so that a kill at any moment loses at most the row being written.

    Each row is one `write` of a complete line followed by a flush; on open, a torn last line left by a
    killed process is cut off. `fsync_every` bounds what an OS crash (not just a process kill) can lose.
    """

    def __init__(self, path: str | Path, fsync_every: int = 64):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_torn_tail()
        self._f = open(self.path, "ab")
        self._fsync_every = fsync_every
        self._pending = 0

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)

    def write(self, row: dict[str, Any]) -> None:
        self._f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self._f.flush()
        self._pending += 1
        if self._pending >= self._fsync_every:
            os.fsync(self._f.fileno())
            self._pending = 0

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def done_keys(path: str | Path, key: Callable[[dict[str, Any]], str]) -> set[str]:
    """Keys of the rows already in a (possibly partial) JSONL output: what a resumed stage can skip."""
    path = Path(path)
    if not path.exists():
        return set()
    return {key(row) for row in iter_rows(path)}


def stream_path(out_path: Path) -> Path:
    """Rows stream to a JSONL file: the output itself, or a sidecar converted to Parquet at the end."""
    if out_path.suffix == ".jsonl":
        return out_path
    if out_path.suffix == ".parquet":
        return out_path.with_name(out_path.name + ".partial.jsonl")
    raise MgaError(f"{out_path}: unsupported output type '{out_path.suffix}' (use .jsonl or .parquet)")


def finalize_stream(out_path: Path, stream: Path, order: list[str], key: Callable[[dict[str, Any]], str]) -> list[dict]:
    """Rewrite the streamed rows in input order (one row per key, none whose key left `order`), atomically;
    convert to Parquet if asked."""
    rows: dict[str, dict[str, Any]] = {}
    for row in iter_rows(stream):
        rows.setdefault(key(row), row)
    ordered = [rows[k] for k in dict.fromkeys(order) if k in rows]
    write_rows(out_path, ordered)
    if stream != out_path:
        stream.unlink(missing_ok=True)
    return ordered
