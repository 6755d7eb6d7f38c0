"""Plain-file I/O shared by every stage: rows in JSONL or Parquet, atomic writes, crash-safe appends.

A stage reads rows (dicts) and writes rows. Rows are read by the one reader of `mga.distill.core.sources`
(a file in any format the README lists, or a folder of them), strictly. Final files are written atomically
(temp file + rename), so a crash never leaves a half-written output; streaming outputs go through
`JsonlAppender`, which writes whole lines only and drops a torn last line left by a killed process.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError, disk_full, is_disk_full
from mga.distill.core.sources import SUFFIXES, iter_file, resolve, suffix_of

FORMATS = (".jsonl", ".json", ".parquet")  # what the toolkit writes; it reads every format of SUFFIXES


def _check_format(path: Path) -> None:
    if path.suffix not in FORMATS:
        raise MgaError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl or .parquet)")


def _check_readable_format(path: Path) -> None:
    if suffix_of(path) is None:
        raise MgaError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(SUFFIXES)})")


def check_input(path: str | Path, what: str = "input") -> Path:
    """An existing, readable, non-empty rows file of a supported type (or a folder of them), or one `MgaError`
    naming it."""
    path = Path(path)
    if not path.exists():
        raise MgaError(f"{path}: {what} file not found")
    if path.is_dir():
        try:
            resolve(path)  # a folder of rows files, or a saved dataset
        except MgaError:
            raise MgaError(f"{path}: {what} is a directory without rows files; give a .jsonl or .parquet file") from None
        return path
    _check_readable_format(path)
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


def numbered_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) of a rows file or folder, streamed: `where` is `file:line` (JSONL) or `file:row`, for
    messages about one row. A bad line is an error; a torn final JSONL line (killed writer) is skipped."""
    path = Path(path)
    if not path.is_dir():
        _check_readable_format(path)
        if not path.exists():
            raise MgaError(f"{path}: file not found")
    for file in resolve(path).files:
        for number, row in iter_file(file):
            yield f"{file}:{number}", row


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a rows file or folder in any readable format (see `numbered_rows`)."""
    return (row for _, row in numbered_rows(path))


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_rows(path))


def _unchanged(path: Path) -> str:
    return "the previous file is kept unchanged" if path.exists() else "nothing was written, nothing was lost"


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write all rows at once, atomically; the format follows the extension (.jsonl or .parquet). A full disk
    leaves the previous file as it was (an `MgaError` saying so)."""
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, MgaError):  # the rows' own full-disk error says more
            raise disk_full(path, _unchanged(path)) from None
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write one JSON document (manifests, accounting, metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, _unchanged(path)) from None
        raise
    return path


def writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """A folder that exists and takes a new file, checked by writing one (permissions, a read-only or full file
    system, an immutable folder: root passes permission checks, not these), before any work; else `MgaError`."""
    path = Path(path)
    check_output(path, what=what, folder=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".mga-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MgaError(f"{path}: the {what} is not writable ({e.strerror}); give another folder or fix its "
                       "permissions") from None
    return path


class JsonlAppender:
    """Append rows to a JSONL file so that a kill at any moment loses at most the row being written.

    Each row is one `write` of a complete line, unbuffered; on open, a torn last line left by a killed process
    is cut off, and a write that fails (a full disk) is cut off at once, so the file always ends with a whole
    line. `fsync_every` bounds what an OS crash (not just a process kill) can lose.
    """

    def __init__(self, path: str | Path, fsync_every: int = 64):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = self._truncate_torn_tail()
        self._fsync_every = fsync_every
        self._pending = 0

    def _truncate_torn_tail(self) -> int:
        """Cut the file after its last newline (reading back from the end only); its new size."""
        size = os.fstat(self._fd).st_size
        with open(self.path, "rb") as f:
            end = size
            while end > 0:
                start = max(0, end - (1 << 16))
                f.seek(start)
                block = f.read(end - start)
                if (newline := block.rfind(b"\n")) >= 0:
                    end = start + newline + 1
                    break
                end = start
        if end != size:
            os.ftruncate(self._fd, end)
        return end

    def _kept(self) -> str:
        with open(self.path, "rb") as f:
            rows = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
        return f"{rows:,} complete rows of {self.path.name} are kept (no partial row)"

    def _failed(self, e: OSError) -> MgaError | OSError:
        os.ftruncate(self._fd, self._size)  # never a torn last line, whatever part of the row reached the disk
        return disk_full(self.path, self._kept()) if is_disk_full(e) else e

    def write(self, row: dict[str, Any]) -> None:
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            done = 0
            while done < len(line):
                done += os.write(self._fd, line[done:])
            self._pending += 1
            if self._pending >= self._fsync_every:
                os.fsync(self._fd)
                self._pending = 0
        except OSError as e:
            raise self._failed(e) from None
        self._size += len(line)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            except OSError as e:
                if is_disk_full(e):
                    raise disk_full(self.path, "the rows written may not all be on disk") from None
                raise
            finally:
                os.close(fd)

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
