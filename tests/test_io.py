"""Row I/O: atomic writes, crash-safe appends that drop a torn line, clear errors for bad files."""

from __future__ import annotations

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender, done_keys, read_rows, write_rows

ROWS = [{"meta": {"docid": "a", "chunk_id": 0}, "text": "héllo"}, {"meta": {"docid": "b", "chunk_id": 1}, "text": "x"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_roundtrip(tmp_path, suffix):
    path = write_rows(tmp_path / f"rows{suffix}", ROWS)
    assert read_rows(path) == ROWS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_appender_drops_torn_tail_and_resumes(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path) as out:
        out.write(ROWS[0])
    with open(path, "ab") as f:  # a killed writer left half a row
        f.write(b'{"meta": {"docid": "b", "chu')
    assert read_rows(path) == ROWS[:1]
    with JsonlAppender(path) as out:
        out.write(ROWS[1])
    assert read_rows(path) == ROWS
    assert done_keys(path, lambda r: r["meta"]["docid"]) == {"a", "b"}


def test_bad_files(tmp_path):
    with pytest.raises(MgaError, match="file not found"):
        read_rows(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(MgaError, match=r"bad.jsonl:2: not a JSON row"):
        read_rows(bad)
    with pytest.raises(MgaError, match="unsupported file type"):
        read_rows(tmp_path / "rows.csv")


# ---- every format the README lists, single files and folders alike, through the one reader ---------------------


def _write_format(path, fmt, rows):
    """`rows` saved in `fmt` at `path` (a file, or a folder for `folder` and `saved`); returns what to read."""
    import gzip
    import json

    import pyarrow as pa

    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if fmt == "bom-crlf":
        path = path / "rows.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + lines.replace(b"\n", b"\r\n"))
    elif fmt == "jsonl.gz":
        path = path / "rows.jsonl.gz"
        path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + lines))
    elif fmt == "jsonl.zst":
        path = path / "rows.jsonl.zst"
        with pa.output_stream(str(path), compression="zstd") as out:
            out.write(lines.replace(b"\n", b"\r\n"))
    elif fmt == "parquet":
        path = write_rows(path / "rows.parquet", rows)
    elif fmt == "arrow":
        path = path / "rows.arrow"
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "folder":
        write_rows(path / "rows" / "part-0.jsonl", rows[:1])
        write_rows(path / "rows" / "part-1.parquet", rows[1:])
        path = path / "rows"
    elif fmt == "saved":
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(path / "saved"))
        path = path / "saved"
    return path


FORMATS_READ = ["bom-crlf", "jsonl.gz", "jsonl.zst", "parquet", "arrow", "folder", "saved"]


@pytest.mark.parametrize("fmt", FORMATS_READ)
def test_every_reader_takes_every_listed_format(tmp_path, fmt):
    from mga.distill.core.io import check_input, require_fields

    path = _write_format(tmp_path, fmt, ROWS)
    assert check_input(path) == path
    assert read_rows(path) == ROWS
    require_fields(path, "chunks", "meta.docid")


def test_a_full_disk_keeps_whole_rows_and_says_how_many(tmp_path, monkeypatch):
    """ENOSPC injected at the OS boundary: the row that did not fit is cut off, the error counts the rows kept."""
    import errno
    import os

    path = tmp_path / "out.jsonl"
    real_write, budget = os.write, {"bytes": 60}

    def write(fd, data):  # a disk with 60 bytes left: the second row fits in part, then ENOSPC
        if fd != appender._fd:
            return real_write(fd, data)
        if budget["bytes"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        done = real_write(fd, data[: budget["bytes"]])
        budget["bytes"] -= done
        return done

    appender = JsonlAppender(path)
    monkeypatch.setattr(os, "write", write)
    appender.write(ROWS[0])
    with pytest.raises(MgaError, match=r"no space left on device; 1 complete rows of out.jsonl are kept .*rerun"):
        appender.write(ROWS[1])
    monkeypatch.setattr(os, "write", real_write)
    appender.close()
    assert path.read_bytes().endswith(b"\n") and read_rows(path) == ROWS[:1]  # no torn last line
    with JsonlAppender(path) as out:  # the rerun appends after the kept row
        out.write(ROWS[1])
    assert read_rows(path) == ROWS


def test_a_full_disk_leaves_an_atomic_file_as_it_was(tmp_path, monkeypatch):
    import errno
    import os

    from mga.distill.core.io import write_json

    path = write_rows(tmp_path / "rows.jsonl", ROWS[:1])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(MgaError, match="no space left on device; the previous file is kept unchanged"):
        write_rows(path, ROWS)
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(MgaError, match="accounting.json: no space left on device; nothing was written, nothing was lost"):
        write_json(tmp_path / "accounting.json", {"stages": {}})
    monkeypatch.undo()
    assert read_rows(path) == ROWS[:1] and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
