"""The streaming corpus reader: files, folders, globs and saved datasets; gz/zst/Parquet/Arrow; bad files as one
error line; shard assignment by file; streaming sampling; and the on-disk indexes that hold resume state."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mga.distill.cli.main import app
from mga.distill.core.config import CorpusConfig
from mga.distill.core.diskindex import DiskSet, RowIndex
from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender, read_rows
from mga.distill.core.sources import first_row, iter_file, resolve
from mga.distill.label.chunk import chunk_corpus
from typer.testing import CliRunner


def _docs(start: int, n: int) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"Document number {i} talks about topic {i % 7}."}
            for i in range(start, start + n)]


def _jsonl_gz(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def _parquet(path: Path, rows: list[dict], row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def _ids(path: Path) -> list[str]:
    return [r["meta"]["docid"] for r in read_rows(path)]


def test_a_folder_a_glob_and_a_saved_dataset_read_the_same_documents(tmp_path):
    rows = _docs(0, 30)
    folder = tmp_path / "corpus"
    _jsonl_gz(folder / "a" / "part-0.jsonl.gz", rows[:10])
    _parquet(folder / "b" / "part-1.parquet", rows[10:20], row_group_size=3)
    with pa.output_stream(str(folder / "part-2.jsonl.zst"), compression="zstd") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows[20:]).encode())
    (folder / "notes.txt").write_text("not a corpus file")
    _jsonl_gz(folder / ".cache" / "stale.jsonl.gz", rows[:3])  # hidden: never read
    from datasets import Dataset, DatasetDict

    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_list(rows[:15]), "test": Dataset.from_list(rows[15:])}).save_to_disk(
        str(tmp_path / "saved_dict"))

    assert [p.name for p in resolve(folder).files] == ["part-0.jsonl.gz", "part-1.parquet", "part-2.jsonl.zst"]
    expected = sorted(r["id"] for r in rows)
    for spec in (folder, f"{folder}/**/part-*", tmp_path / "saved", tmp_path / "saved_dict"):
        out = chunk_corpus(spec, tmp_path / "chunks.jsonl", CorpusConfig())
        assert sorted(_ids(out)) == expected, spec
    assert first_row(folder) == rows[0]


def test_parquet_streams_by_record_batch_and_reads_only_the_needed_columns(tmp_path):
    rows = [{**r, "blob": "x" * 1000} for r in _docs(0, 50)]
    path = _parquet(tmp_path / "c.parquet", rows, row_group_size=10)
    got = list(iter_file(path, warn=print, columns=["id", "text"]))
    assert [n for n, _ in got] == list(range(1, 51))
    assert got[0][1] == {"id": "doc-0", "text": rows[0]["text"]}  # `blob` was never decoded


@pytest.mark.parametrize("name, data, what", [
    ("bad.parquet", b"PAR1 this is not parquet at all PAR1", "not a readable Parquet file"),
    ("bad.jsonl.gz", b"\x1f\x8b\x08\x00garbage-garbage-garbage", "not a readable JSONL file"),
])
def test_a_corrupt_file_is_one_error_line_naming_it(tmp_path, name, data, what):
    _jsonl_gz(tmp_path / "corpus" / "a-good.jsonl.gz", _docs(0, 3))
    (tmp_path / "corpus" / name).write_bytes(data)
    with pytest.raises(MgaError, match=f"{name}: {what}"):
        chunk_corpus(tmp_path / "corpus", tmp_path / "chunks.jsonl", CorpusConfig())
    assert not (tmp_path / "chunks.jsonl").exists()  # nothing half-written
    result = CliRunner().invoke(app, ["label", "--stage", "pairs", "-i", str(tmp_path / "corpus"),
                                      "-o", str(tmp_path / "out" / "pairs.jsonl"), "--model", "m",
                                      "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code != 0 and name in str(result.exception)


def test_missing_and_empty_corpora_are_errors(tmp_path):
    with pytest.raises(MgaError, match="corpus not found"):
        resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MgaError, match="no corpus files"):
        resolve(tmp_path / "empty")
    with pytest.raises(MgaError, match="no corpus files"):
        resolve(str(tmp_path / "*.parquet"))


def test_shards_take_whole_files_round_robin_or_hash_rows_when_files_are_few(tmp_path):
    files = [_jsonl_gz(tmp_path / "c" / f"part-{i}.jsonl.gz", _docs(10 * i, 10)) for i in range(5)]
    source = resolve(tmp_path / "c")
    assert source.files_of_shard(0, 2) == ((files[0], files[2], files[4]), True)
    assert source.files_of_shard(1, 2) == ((files[1], files[3]), True)
    assert source.files_of_shard(3, 8) == (tuple(files), False)  # fewer files than shards: every file, hashed rows
    seen: list[str] = []
    for n in (2, 8):
        for i in range(n):
            out = chunk_corpus(tmp_path / "c", tmp_path / f"s{i}.jsonl", CorpusConfig(), shard_index=i, num_shards=n)
            seen += _ids(out)
        assert sorted(seen) == sorted(f"doc-{i}" for i in range(50))
        seen = []


def test_streaming_sample_is_seeded_and_does_not_depend_on_how_the_corpus_is_split(tmp_path):
    rows = _docs(0, 200)
    one = _jsonl_gz(tmp_path / "one.jsonl.gz", rows)
    for i in range(4):  # the same documents, in four files, in another order
        _parquet(tmp_path / "four" / f"p{i}.parquet", rows[i::4][::-1])
    cfg = CorpusConfig(sample_size=20)
    a = _ids(chunk_corpus(one, tmp_path / "a.jsonl", cfg, seed=1))
    b = _ids(chunk_corpus(tmp_path / "four", tmp_path / "b.jsonl", cfg, seed=1))
    c = _ids(chunk_corpus(one, tmp_path / "c.jsonl", cfg, seed=2))
    assert len(a) == 20 and sorted(a) == sorted(b) and set(a) != set(c)
    assert a == sorted(a, key=lambda d: int(d.split("-")[1]))  # corpus order


def test_default_ids_name_the_file_so_two_files_never_collide(tmp_path):
    rows = [{"text": f"text {i}"} for i in range(3)]
    _jsonl_gz(tmp_path / "c" / "x" / "part.jsonl.gz", rows)
    _jsonl_gz(tmp_path / "c" / "y" / "part.jsonl.gz", rows)
    ids = _ids(chunk_corpus(tmp_path / "c", tmp_path / "o.jsonl", CorpusConfig()))
    assert ids == ["x/part-1", "x/part-2", "x/part-3", "y/part-1", "y/part-2", "y/part-3"]


def test_disk_set_and_row_index_follow_an_append_only_stream(tmp_path):
    with DiskSet(tmp_path) as seen:
        assert [seen.add(k) for k in ("a", "b", "a")] == [True, True, False]
    assert not list(tmp_path.iterdir())  # the temporary set is gone

    stream = tmp_path / "rows.jsonl"
    key = lambda r: r["k"]  # noqa: E731
    with JsonlAppender(stream) as out:
        for k in "abc":
            out.write({"k": k, "v": k * 3})
    index = RowIndex(stream, key)
    assert len(index) == 3 and "b" in index and index.get("c") == {"k": "c", "v": "ccc"} and index.get("z") is None
    with open(stream, "ab") as f:  # two more rows and a torn line (a killed writer)
        f.write(b'{"k": "d", "v": 1}\n{"k": "a", "v": "dup"}\n{"k": "e"')
    assert index.refresh() == 4 and index.get("a")["v"] == "aaa" and "e" not in index  # first row of a key wins
    index.close()
    stream.write_text('{"k": "x"}\n')  # the stream was replaced: the index starts over
    with RowIndex(stream, key) as again:
        assert len(again) == 1 and "x" in again and "a" not in again


def test_a_run_fingerprints_a_corpus_by_content_or_by_a_listing_when_it_is_huge(tmp_path, monkeypatch):
    from mga.distill.pipeline import manifest

    files = [_jsonl_gz(tmp_path / "c" / f"p{i}.jsonl.gz", _docs(i, 2)) for i in range(2)]
    signature = tmp_path / "run" / "source.json"
    assert manifest.fingerprint_paths(tmp_path / "c", signature) == files and not signature.exists()
    monkeypatch.setattr(manifest, "CONTENT_HASH_LIMIT", 10)
    assert manifest.fingerprint_paths(tmp_path / "c", signature) == [signature]
    listing = json.loads(signature.read_text())
    assert [f[:2] for f in listing["files"]] == [[str(p), p.stat().st_size] for p in files]


def test_a_recipe_takes_a_folder_or_a_glob_as_its_corpus(tmp_path):
    from mga.distill.pipeline.recipe import load_recipe

    _jsonl_gz(tmp_path / "c" / "p.jsonl.gz", _docs(0, 2))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\n")
    for spec in (tmp_path / "c", f"{tmp_path}/c/*.jsonl.gz"):
        assert str(load_recipe(recipe, [f"corpus.path={spec}"]).corpus.path) == str(spec)
    with pytest.raises(MgaError, match="corpus.path: .*no corpus files"):
        load_recipe(recipe, [f"corpus.path={tmp_path}/c/*.parquet"])
