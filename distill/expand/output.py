"""Streaming writers for the expanded corpus: Parquet shards of bounded size, or JSONL, written atomically.

Rows arrive one at a time and leave in row groups, so memory holds one row group, never the corpus.
Parquet files go to a temporary folder and are renamed `data/train-0000i-of-0000n.parquet` (the layout the
Hugging Face Hub and `datasets` expect) only when the last one is complete; the previous `data/` folder is
replaced at that moment, so a killed run never leaves a half-written output beside a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mga.distill.core.schema import mgacorpus_arrow_schema

OUTPUT_FORMATS = ("parquet", "jsonl")
DATA_DIR = "data"
DEFAULT_SHARD_ROWS = 100_000
DEFAULT_SHARD_BYTES = 256 * 1024**2
ROW_GROUP_ROWS = 1_000


class AtomicJsonl:
    """A JSONL file written line by line to a temporary name and moved into place by `commit`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._f = os.fdopen(fd, "w", encoding="utf-8")
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def commit(self) -> list[str]:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        return [self.path.name]

    def abort(self) -> None:
        self._f.close()
        Path(self._tmp).unlink(missing_ok=True)


class ParquetShards:
    """Parquet files of at most `max_rows` rows and about `max_bytes` bytes each, in the MGACorpus schema."""

    def __init__(self, folder: Path, *, max_rows: int = DEFAULT_SHARD_ROWS, max_bytes: int = DEFAULT_SHARD_BYTES):
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}.", suffix=".tmp"))
        self._schema = mgacorpus_arrow_schema()
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self._buffer: list[dict[str, Any]] = []
        self._writer = None
        self._file = None
        self._in_file = 0
        self._files: list[Path] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= min(ROW_GROUP_ROWS, self.max_rows - self._in_file):
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._buffer:
            return
        if self._writer is None:
            path = self._tmp / f"part-{len(self._files):05d}.parquet"
            self._files.append(path)
            self._file = open(path, "wb")
            self._writer = pq.ParquetWriter(self._file, self._schema, compression="zstd")
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema))
        self._in_file += len(self._buffer)
        self._buffer = []
        if self._in_file >= self.max_rows or self._file.tell() >= self.max_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer, self._file, self._in_file = None, None, 0

    def commit(self) -> list[str]:
        """Close the last file, name the files `train-i-of-n`, and swap the folder in; the files' names."""
        self._flush()
        self._close_file()
        if not self._files:  # an empty shard still loads (zero rows, the schema)
            import pyarrow.parquet as pq

            self._files.append(self._tmp / "part-00000.parquet")
            pq.write_table(self._schema.empty_table(), self._files[0])
        names = [f"train-{i:05d}-of-{len(self._files):05d}.parquet" for i in range(len(self._files))]
        for path, name in zip(self._files, names, strict=True):
            path.rename(self._tmp / name)
        old = self.folder.with_name(f".{self.folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(old)
        self._tmp.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)
        return [f"{self.folder.name}/{name}" for name in names]

    def abort(self) -> None:
        self._close_file()
        shutil.rmtree(self._tmp, ignore_errors=True)


def open_output(work_dir: Path, output_format: str, *, shard_rows: int,
                shard_bytes: int) -> AtomicJsonl | ParquetShards:
    """Where the kept rows go: `data/*.parquet` shards, or `expanded.jsonl`."""
    if output_format == "jsonl":
        return AtomicJsonl(work_dir / "expanded.jsonl")
    return ParquetShards(work_dir / DATA_DIR, max_rows=shard_rows, max_bytes=shard_bytes)
