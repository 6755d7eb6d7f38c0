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
