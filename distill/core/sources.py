"""The one streaming reader of rows: a file, a folder, a glob, or a folder saved by `datasets`.

Rows come from a set of files, `.jsonl` (`.json`), `.jsonl.gz`, `.jsonl.zst`, `.parquet`, `.arrow` files or
the Arrow files of a `Dataset.save_to_disk` folder; a UTF-8 byte-order mark and CRLF line ends are accepted.
Rows are read as a stream, never a whole file at once: JSONL line by line, Parquet and Arrow by record
batches. A file that cannot be opened or decoded (corrupt Parquet, a broken gzip stream) is one `error:` line
naming it. A bad JSON line is a warning and the row is skipped when reading a corpus (`warn`); every other
reader (`mga.distill.core.io.iter_rows`: the toolkit's own files) is `strict`: a bad line is an error, but for
a torn last line left by a killed writer, which is skipped.

Sharding for job arrays (`files_of_shard`): the files are sorted by path; with at least as many files as
shards, file j belongs to shard j mod n, and a shard opens only its own files. With fewer files than shards,
every shard reads every file and keeps the rows whose document id hashes to it (`shard_of`).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError

SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".arrow")
BATCH_ROWS = 1024  # rows per Parquet/Arrow record batch held in memory

Warn = Callable[[str], None]


def shard_of(docid: str, num_shards: int) -> int:
    """The shard a document belongs to: a hash of its id that is the same on every machine and run."""
    digest = hashlib.sha1(str(docid).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def suffix_of(path: Path) -> str | None:
    """The readable format a file's name ends in (`.jsonl.gz`), or None."""
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _saved_dataset_files(folder: Path) -> list[Path] | None:
    """The Arrow files of a `save_to_disk` folder (a Dataset, or every split of a DatasetDict), else None."""
    if (folder / "state.json").is_file():
        state = json.loads((folder / "state.json").read_text())
        return [folder / f["filename"] for f in state.get("_data_files", [])]
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        return [f for split in splits for f in _saved_dataset_files(folder / split) or []]
    return None


@dataclass(frozen=True)
class Source:
    """A corpus resolved to its files (sorted); `root` names documents without an id field."""

    spec: str
    files: tuple[Path, ...]
    root: Path

    def files_of_shard(self, shard_index: int, num_shards: int) -> tuple[tuple[Path, ...], bool]:
        """(the files this shard reads, True when they are its alone so no row needs hashing)."""
        if num_shards > 1 and len(self.files) >= num_shards:
            return self.files[shard_index::num_shards], True
        return self.files, num_shards == 1

    def name_of(self, path: Path) -> str:
        """A file's name for default document ids: its stem, with its folder below the root when several."""
        rel = path.relative_to(self.root) if path.is_relative_to(self.root) else Path(path.name)
        name = rel.as_posix()
        suffix = suffix_of(path) or path.suffix
        return name[: -len(suffix)] if name.endswith(suffix) else name


def resolve(spec: str | Path) -> Source:
    """The files of a corpus given as a file, a folder (searched recursively), a glob, or a saved dataset."""
    text = str(spec)
    path = Path(text)
    if any(c in text for c in "*?["):
        files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        root = _glob_root(text)
    elif path.is_dir():
        saved = _saved_dataset_files(path)
        files = saved if saved is not None else [  # hidden files and folders (.cache/, .partial) are not corpus
            p for p in path.rglob("*") if p.is_file() and not any(q.startswith(".") for q in p.relative_to(path).parts)]
        root = path
    elif path.is_file():
        files, root = [path], path.parent
    else:
        raise MgaError(f"{text}: corpus not found (give a file, a folder or a glob of .jsonl/.jsonl.gz/.parquet)")
    unsupported = [p for p in files if suffix_of(p) is None and not p.name.startswith(".")]
    files = [p for p in files if suffix_of(p) is not None]
    if path.is_file() and unsupported:
        raise MgaError(f"{text}: unsupported corpus file type (use {', '.join(SUFFIXES[:-1])})")
    if not files:
        raise MgaError(f"{text}: no corpus files ({', '.join(SUFFIXES[:-1])}) found")
    return Source(spec=text, files=tuple(sorted(files)), root=root)


def _glob_root(pattern: str) -> Path:
    """The folder a glob starts from (the part before its first wildcard)."""
    parts = Path(pattern).parts
    fixed = next((parts[:i] for i, part in enumerate(parts) if any(c in part for c in "*?[")), parts)
    return Path(*fixed) if fixed else Path(".")


# ---- reading one file ------------------------------------------------------------------------------------------


def _binary_lines(path: Path) -> io.BufferedIOBase:
    suffix = suffix_of(path) or ""
    if suffix.endswith((".gz", ".zst")):
        import pyarrow as pa

        codec = "gzip" if suffix.endswith(".gz") else "zstd"
        return io.BufferedReader(pa.input_stream(str(path), compression=codec), buffer_size=1 << 20)
    return open(path, "rb")


def _jsonl_rows(path: Path, warn: Warn, strict: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    with _binary_lines(path) as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:  # bytes: json detects UTF-8 and skips a byte-order mark
                row = json.loads(raw)
                problem = None if isinstance(row, dict) else f"a row must be a JSON object, got {type(row).__name__}"
            except UnicodeDecodeError as e:
                problem = f"not valid UTF-8 (byte {e.start})"
            except json.JSONDecodeError as e:
                problem = f"not a JSON row ({e.msg})"
            if problem is None:
                yield number, row
            elif strict and not raw.endswith(b"\n"):
                continue  # a torn last line: its writer was killed, and resumes by rewriting it
            elif strict:
                raise MgaError(f"{path}:{number}: {problem}")
            else:
                warn(f"{path.name}:{number}: {problem}, row skipped")


def _batches(path: Path, columns: list[str] | None) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        wanted = [c for c in columns if c in names] if columns is not None else None
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted or None)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
            return
        yield from reader


def _columnar_rows(path: Path, columns: list[str] | None) -> Iterator[tuple[int, dict[str, Any]]]:
    number = 0
    for batch in _batches(path, columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def iter_file(path: Path, warn: Warn | None = None, columns: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of one rows file, streamed; `columns` limits what Parquet/Arrow files decode. Bad JSON
    lines go to `warn` and are skipped; without `warn` they are errors (strict), but for a torn last line.

    An unreadable file raises one `MgaError` naming it (rows already yielded stay yielded)."""
    import pyarrow as pa

    kind = "Parquet" if path.suffix == ".parquet" else "Arrow" if path.suffix == ".arrow" else "JSONL"
    try:
        if kind == "JSONL":
            yield from _jsonl_rows(path, warn or (lambda _: None), strict=warn is None)
        else:
            yield from _columnar_rows(path, columns)
    except FileNotFoundError:
        raise MgaError(f"{path}: file not found") from None
    except (OSError, EOFError, pa.ArrowException) as e:
        raise MgaError(f"{path}: not a readable {kind} file ({e.__class__.__name__}: {str(e)[:200]})") from None


def first_row(spec: str | Path) -> dict[str, Any] | None:
    """The first readable row of a corpus (what kind of file is this?), or None when it has none."""
    source = resolve(spec)
    for path in source.files:
        for _, row in iter_file(path, warn=lambda _: None):
            return row
    return None
