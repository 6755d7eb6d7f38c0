"""`mga expand`: MGACorpus rows, cleaning and statistics that add up, sharding, resume, and Ray = local.

The pairs model (SLM-1) is served by the loopback OpenAI-compatible server (`fake_openai`) answering valid
pairs JSON, because the tiny random-weight model cannot produce JSON and overfitting it to do so costs
minutes on 2 cores. Rewrites (SLM-2) come from the tiny transformers model in the Ray-vs-local test, where
the generated text (greedy) must be identical on both executors; with random weights it never emits EOS, so
those rewrites end as `rewrite_truncated` rejections. The scripted server also plays SLM-2 in the tests of
cleaning and counts, where rewrites must be predictable (a boilerplate line, an off-topic rewrite).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset
from mga.distill.cli.main import app
from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, read_rows, write_rows
from mga.distill.core.tokens import estimate_tokens
from mga.distill.expand.expand import expand_corpus, shard_of
from typer.testing import CliRunner

from tests.fake_openai import ECHO_TOLERANT_FILTER, Reply

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus.jsonl"
PAIRS = {"genres": ["poem", "essay", "letter", "dialogue", "limerick"],
         "audiences": ["children", "teachers", "skeptics", "students", "parents"]}
BROKEN_DOC = "pydoc-break"  # its pairs answer is never valid JSON: a pairs_invalid rejection


@pytest.fixture(scope="module")
def echo_filter(tmp_path_factory) -> Path:
    """ECHO_TOLERANT_FILTER (the scripted SLM-2 echoes the document) as a `--filter-config` file."""
    path = tmp_path_factory.mktemp("filter") / "filter.yaml"
    path.write_text(yaml.safe_dump({"filter": ECHO_TOLERANT_FILTER}))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six short documents of the bundled sample (one chunk each)."""
    docs = [r for r in iter_rows(SAMPLE) if len(r["text"].split()) < 100][:6]
    assert any(d["id"] == BROKEN_DOC for d in docs)
    return write_rows(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", docs)


def _document(request: dict) -> dict:
    user = request["messages"][-1]["content"]
    return next(d for d in iter_rows(SAMPLE) if d["text"].strip() in user)


def tool_models(request: dict) -> Reply:
    """SLM-1 answers pairs JSON; SLM-2 echoes the document between a boilerplate line and a closing line (a bare
    copy would be rejected), off-topic for limericks."""
    doc = _document(request)
    if request["model"] == "slm-pairs":
        return Reply(content="no pairs today" if doc["id"] == BROKEN_DOC else json.dumps(PAIRS))
    if "limerick" in request["messages"][-1]["content"]:
        return Reply(content="Once upon a time a dragon slept on a mountain of gold.")
    return Reply(content=f"Note: rewritten as required.\n{doc['text']}\nThat is the whole story.")


def _expand(corpus: Path, out: Path, server, **kwargs) -> dict:
    from mga.judge.config import FilterConfig

    options = dict(pairs_model="slm-pairs", rewrite_model="slm-rewrite", backend="openai", base_url=server.url,
                   max_new_tokens=64, show=False, filter_cfg=FilterConfig(**ECHO_TOLERANT_FILTER))
    return expand_corpus(corpus, out, **{**options, **kwargs})


def _kept(folder: Path) -> list[dict]:
    """The kept rows, from the Parquet shards (in file order) or expanded.jsonl."""
    if (folder / "expanded.jsonl").exists():
        return read_rows(folder / "expanded.jsonl")
    return [row for path in sorted((folder / "data").glob("*.parquet")) for row in iter_rows(path)]


def _rows(folder: Path) -> tuple[list[dict], list[dict]]:
    return _kept(folder), read_rows(folder / "rejected.jsonl")


def _canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_expand_writes_mgacorpus_rows_and_statistics_that_add_up(corpus, tmp_path, fake_openai, echo_filter):
    server = fake_openai(tool_models)
    result = CliRunner().invoke(app, [
        "expand", str(corpus), "--pairs-model", "slm-pairs", "--rewrite-model", "slm-rewrite", "--backend",
        "openai", "--base-url", server.url, "-o", str(tmp_path / "out"), "--max-new-tokens", "64",
        "--filter-config", str(echo_filter),
    ])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    stats = json.loads((out / "stats.json").read_text())
    expanded, rejected = _rows(out)

    assert stats["documents"] == stats["chunks"] == 6
    assert stats["pairs_ok"] == 5 and stats["pairs_failed"] == 1
    assert stats["rewrites"] == stats["pairs_ok"] * 5
    assert stats["expanded"] == len(expanded) == 20  # the limerick of each document is off-topic
    assert stats["rejected_by_reason"] == {"low_keyword_coverage": 5, "pairs_invalid": 1}
    assert stats["rejected"] == len(rejected) == stats["pairs_failed"] + stats["rewrites"] - stats["expanded"]
    # one SLM-1 call per document (3 tries for the broken one) and one SLM-2 call per (document, pair)
    calls = Counter(r["model"] for r in server.requests)
    assert calls == {"slm-pairs": 5 + 3, "slm-rewrite": 25}

    for row in expanded:
        meta = row["meta"]
        assert set(meta) >= {"docid", "chunk_id", "genre", "audience", "raw_text", "source", "split", "meta_extra"}
        assert meta["split"] == "train"
        assert meta["genre"] in PAIRS["genres"] and meta["audience"] in PAIRS["audiences"]
        assert row["cleaning"]["removed_lines"][0] == "Note: rewritten as required."  # cleaned away
        assert row["content_split"].startswith(meta["raw_text"][:40])
        assert row["variant"] == "base" and row["model"] == "slm-rewrite" and row["finish_reason"] == "stop"
        assert meta["monitors"]["copy_rate"] > 0.8 and meta["monitors"]["language"] == "en"  # the echo, measured
    assert {r["meta"]["docid"] for r in rejected if r["reject"]["reason"] == "pairs_invalid"} == {BROKEN_DOC}
    assert all(r["reject"]["reason"] for r in rejected)
    assert stats["tokens_in"] == sum(estimate_tokens(r["text"]) for r in iter_rows(corpus))
    assert stats["tokens_out"] == sum(estimate_tokens(r["content_split"]) for r in expanded)
    assert stats["expansion_factor"] == pytest.approx(stats["tokens_out"] / stats["tokens_in"], abs=1e-3)
    assert "token expansion factor" in result.output
    generated = [r for r in read_rows(out / "rewrites.jsonl") if r["content_split"]]
    assert generated and all(0 <= r["meta"]["monitors"]["copy_rate"] <= 1 for r in generated)  # measured as written
    assert stats["quality"]["measured"] == 25 and stats["quality_thresholds"]["max_copy_rate"] == 1.0
    assert "## Quality" in (out / "README.md").read_text()


def test_shards_cover_every_document_once_and_a_finished_shard_reruns_for_free(corpus, tmp_path, fake_openai):
    server = fake_openai(tool_models)
    seen: Counter[str] = Counter()
    for index in range(3):
        stats = _expand(corpus, tmp_path, server, shard_index=index, num_shards=3)
        folder = tmp_path / f"shard-{index}-of-3"
        docids = {r["meta"]["docid"] for rows in _rows(folder) for r in rows}
        assert all(shard_of(d, 3) == index for d in docids)
        assert stats["documents"] == len(docids)
        seen.update(docids)
        if index == 1:  # a merge before the array is done names the shards still missing
            early = CliRunner().invoke(app, ["expand", "--merge", "-o", str(tmp_path)])
            assert early.exit_code != 0 and "1 of 3 shards not finished yet (index 2)" in str(early.exception)
    assert seen == Counter({r["id"]: 1 for r in iter_rows(corpus)})

    merged = CliRunner().invoke(app, ["expand", "--merge", "-o", str(tmp_path)])
    assert merged.exit_code == 0, merged.output
    total = json.loads((tmp_path / "stats.json").read_text())
    parts = [json.loads((tmp_path / f"shard-{i}-of-3" / "stats.json").read_text()) for i in range(3)]
    for key in ("documents", "chunks", "rewrites", "expanded", "rejected", "tokens_in", "tokens_out"):
        assert total[key] == sum(p[key] for p in parts), key
    assert total["rejected_by_reason"] == {"low_keyword_coverage": 5, "pairs_invalid": 1}
    assert total["expansion_factor"] == pytest.approx(total["tokens_out"] / total["tokens_in"], abs=1e-3)
    loaded = load_dataset("parquet", data_files=str(tmp_path / "shard-*-of-3" / "data" / "*.parquet"), split="train")
    assert loaded.num_rows == total["expanded"] == 20
    assert "shard-*-of-3/data/*.parquet" in (tmp_path / "README.md").read_text()
    assert load_dataset(str(tmp_path), split="train").num_rows == 20  # through the merged card's header

    before, sent = _rows(tmp_path / "shard-1-of-3"), len(server.requests)
    again = _expand(corpus, tmp_path, server, shard_index=1, num_shards=3)
    assert again["generated"] == {"pairs": 0, "rewrites": 0}
    assert len(server.requests) == sent
    assert _rows(tmp_path / "shard-1-of-3") == before


def test_a_killed_run_resumes_where_it_stopped(corpus, tmp_path, fake_openai):
    server = fake_openai(tool_models)
    full = _expand(corpus, tmp_path / "a", server)
    rewrites = tmp_path / "a" / "rewrites.jsonl"
    kept = read_rows(rewrites)[:7]
    with open(rewrites, "w") as f:  # as a kill leaves it: 7 whole rows and a torn one
        f.write("".join(json.dumps(r) + "\n" for r in kept) + '{"meta": {"doc')
    (tmp_path / "a" / ".mga-cache.sqlite").unlink()  # no request cache to hide what is re-sent
    sent = len(server.requests)
    resumed = _expand(corpus, tmp_path / "a", server)
    assert resumed["generated"] == {"pairs": 0, "rewrites": full["rewrites"] - 7}
    assert len(server.requests) - sent == full["rewrites"] - 7
    assert {k: resumed[k] for k in ("expanded", "rejected", "tokens_out")} == {
        k: full[k] for k in ("expanded", "rejected", "tokens_out")}


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024**2, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


def test_ray_executor_writes_the_same_rows_as_the_local_executor(corpus, tmp_path, fake_openai, tiny_model_dir,
                                                                  ray_session):
    server = fake_openai(tool_models)
    # batch_size 1: with left padding, which prompts share a batch shifts the logits by float noise, and the
    # near-uniform logits of random weights flip under it; the executors group prompts differently
    common = dict(rewrite_model=str(tiny_model_dir), pairs_backend="openai", rewrite_backend="transformers",
                  max_new_tokens=8, batch_size=1, limit=3)
    local = _expand(corpus, tmp_path / "local", server, **common)
    ray = _expand(corpus, tmp_path / "ray", server, executor="ray", workers=2, **common)

    assert local["rewrites"] == ray["rewrites"] == 10  # 2 documents with valid pairs x 5
    assert local["token_counter"].startswith("tokenizer:")
    assert _canonical(_kept(tmp_path / "local")) == _canonical(_kept(tmp_path / "ray"))
    for name in ("rejected.jsonl", "pairs.jsonl", "rewrites.jsonl"):
        assert _canonical(read_rows(tmp_path / "local" / name)) == _canonical(read_rows(tmp_path / "ray" / name))
    generated = [r for r in read_rows(tmp_path / "ray" / "rewrites.jsonl")]
    assert all(r["content_split"] and r["model"] == tiny_model_dir.name for r in generated)
    counts = ("documents", "chunks", "pairs_ok", "pairs_failed", "rewrites", "expanded", "rejected",
              "rejected_by_reason", "tokens_in", "tokens_out")
    assert {k: local[k] for k in counts} == {k: ray[k] for k in counts}
    assert ray["expanded"] + ray["rejected"] == ray["rewrites"] + ray["pairs_failed"]

    sent = len(server.requests)
    again = _expand(corpus, tmp_path / "ray", server, executor="ray", workers=2, **common)
    assert again["generated"] == {"pairs": 0, "rewrites": 0} and len(server.requests) == sent


def test_user_mistakes_are_one_line_errors(corpus, tmp_path):
    runner = CliRunner()
    for extra, message in ((["--executor", "spark"], "--executor spark"),
                           (["--shard-index", "3", "--num-shards", "2"], "--shard-index 3"),
                           ([], "no such local checkpoint")):
        result = runner.invoke(app, ["expand", str(corpus), "--pairs-model", str(tmp_path / "none"),
                                     "--rewrite-model", str(tmp_path / "none"), "-o", str(tmp_path / "o"), *extra])
        assert result.exit_code != 0
        assert message in str(result.exception)


# ---- corpus-scale inputs and outputs -----------------------------------------------------------------------------


def _parquet_files(corpus: Path, folder: Path, n: int) -> list[Path]:
    """The corpus as `n` Parquet files, documents dealt round-robin."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    docs = read_rows(corpus)
    paths = [folder / f"part-{i:02d}.parquet" for i in range(n)]
    for i, path in enumerate(paths):
        pq.write_table(pa.Table.from_pylist(docs[i::n]), path)
    return paths


def test_a_shard_reads_only_its_own_parquet_files(corpus, tmp_path, fake_openai):
    server = fake_openai(tool_models)
    files = _parquet_files(corpus, tmp_path / "corpus", 4)
    for path in files[1::2]:  # shard 1's files (part-01, part-03) are corrupt: shard 0 must never open them
        path.write_bytes(b"PAR1 not parquet PAR1")
    stats = _expand(tmp_path / "corpus", tmp_path / "out", server, num_shards=2, shard_index=0)
    own = [r["id"] for path in files[0::2] for r in iter_rows(path)]
    kept, rejected = _rows(tmp_path / "out" / "shard-0-of-2")
    assert stats["documents"] == len(own) == 3
    assert {r["meta"]["docid"] for r in kept + rejected} == set(own)

    result = CliRunner().invoke(app, [
        "expand", str(tmp_path / "corpus"), "--pairs-model", "slm-pairs", "--rewrite-model", "slm-rewrite",
        "--backend", "openai", "--base-url", server.url, "-o", str(tmp_path / "out"), "--num-shards", "2",
        "--shard-index", "1"])
    assert result.exit_code != 0 and "part-01.parquet: not a readable Parquet file" in str(result.exception)


def test_a_folder_of_jsonl_gz_expands_like_the_single_file(corpus, tmp_path, fake_openai):
    import gzip

    server = fake_openai(tool_models)
    docs = read_rows(corpus)
    for i in range(3):
        folder = tmp_path / "corpus" / f"crawl-{i}"
        folder.mkdir(parents=True)
        with gzip.open(folder / "000.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs[i::3])
    single = _expand(corpus, tmp_path / "single", server, output_format="jsonl")
    folder = _expand(tmp_path / "corpus", tmp_path / "folder", server)
    counts = ("documents", "chunks", "rewrites", "expanded", "rejected", "rejected_by_reason", "tokens_in",
              "tokens_out")
    assert {k: single[k] for k in counts} == {k: folder[k] for k in counts}
    assert _canonical(_kept(tmp_path / "single")) == _canonical(_kept(tmp_path / "folder"))


def test_output_shards_are_bounded_and_load_with_datasets(corpus, tmp_path, fake_openai):
    server = fake_openai(tool_models)
    out = tmp_path / "out"
    stats = _expand(corpus, out, server, shard_rows=6)
    files = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in files] == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]  # 20 rows, 6 a file
    assert stats["output_files"] == [f"data/{f.name}" for f in files]
    loaded = load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert loaded.num_rows == stats["expanded"] == 20
    assert loaded[0]["meta"]["split"] == "train" and set(loaded.column_names) >= {"meta", "content_split"}
    by_card = load_dataset(str(out), split="train")  # the card's YAML header names the data files
    assert by_card.num_rows == 20

    text = (out / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "data/*.parquet"
    for fact in (str(corpus), "slm-pairs", "slm-rewrite", "base (en)", "0.05", "20 / 6",
                 f"{stats['tokens_in']:,} / {stats['tokens_out']:,}", f"{stats['expansion_factor']:.2f}x"):
        assert fact in text, fact


def test_a_killed_shard_resumes_with_no_duplicate_and_no_lost_row(corpus, tmp_path, fake_openai, echo_filter):
    """A real kill -9 of `mga expand` while rewrites stream in, then the same command again."""
    import signal
    import subprocess
    import sys
    import time

    def staggered(request: dict) -> Reply:  # a document's first rewrite comes at once, the others seconds later
        reply = tool_models(request)
        if request["model"] == "slm-rewrite":
            reply.delay = 2.0 * min(i for i, g in enumerate(PAIRS["genres"]) if g in request["messages"][-1]["content"])
        return reply

    server = fake_openai(staggered)
    index = shard_of(next(r["id"] for r in iter_rows(corpus) if r["id"] != BROKEN_DOC), 2)
    args = [str(Path(sys.executable).parent / "mga"), "expand", str(corpus), "--pairs-model", "slm-pairs",
            "--rewrite-model", "slm-rewrite", "--backend", "openai", "--base-url", server.url, "--max-new-tokens",
            "64", "--num-shards", "2", "--shard-index", str(index), "--filter-config", str(echo_filter)]
    folder = tmp_path / "killed" / f"shard-{index}-of-2"
    proc = subprocess.Popen([*args, "-o", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rewrites = folder / "rewrites.jsonl"
        if rewrites.exists() and rewrites.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = read_rows(folder / "rewrites.jsonl")
    assert written and not (folder / "stats.json").exists()  # killed mid-rewrites

    subprocess.run([*args, "-o", str(tmp_path / "killed")], check=True, capture_output=True)
    subprocess.run([*args, "-o", str(tmp_path / "clean")], check=True, capture_output=True)
    clean = tmp_path / "clean" / f"shard-{index}-of-2"
    for name in ("pairs.jsonl", "rewrites.jsonl"):
        rows = read_rows(folder / name)
        keys = [json.dumps([r["meta"]["docid"], r["meta"].get("pair_id")]) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate rows in {name}"
        assert _canonical(rows) == _canonical(read_rows(clean / name))
    assert _rows(folder) == _rows(clean)


@pytest.mark.real_model
def test_llamacpp_backend_expands_with_the_students_gguf_under_its_schema(corpus, tmp_path, smollm2_f16_gguf):
    """`mga expand --backend llamacpp`: a GGUF file answers both stages on CPUs, stage 1 under its JSON schema
    (llama.cpp's grammar); rows name the model by its file's bytes, so another file at that path is another model."""
    from mga.distill.core.weights import file_digest
    from mga.distill.expand.spec import ExpandSpec

    out = tmp_path / "expanded"
    result = CliRunner().invoke(app, [
        "expand", str(corpus), "--pairs-model", str(smollm2_f16_gguf), "--rewrite-model", str(smollm2_f16_gguf),
        "--backend", "llamacpp", "--structured-output", "json_schema", "--limit", "2", "--max-new-tokens", "160",
        "--max-validation-attempts", "1", "-o", str(out), "--output-format", "jsonl"])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == 2 and stats["pairs_ok"] + stats["pairs_failed"] == 2
    assert stats["rewrites"] == 5 * stats["pairs_ok"]
    rejected = read_rows(out / "rejected.jsonl")
    assert len(rejected) == stats["rejected"] and all(r["reject"]["reason"] for r in rejected)
    for row in rejected:  # the grammar gave every stage-1 answer the schema's shape; its content was refused
        if row["reject"]["stage"] == "pairs":
            pairs = json.loads(row["raw_output"])["pairs"]
            assert len(pairs) == 5 and all(set(pair) == {"genre", "audience"} for pair in pairs), row["raw_output"]
    spec = ExpandSpec(pairs_model=str(smollm2_f16_gguf), rewrite_model=str(smollm2_f16_gguf),
                      pairs_backend="llamacpp", rewrite_backend="llamacpp").with_model_ids()
    assert spec.pairs_model_id == f"{smollm2_f16_gguf.name}@{file_digest(smollm2_f16_gguf)}"


def test_llamacpp_and_structured_output_mistakes_are_one_line_errors(corpus, tmp_path, tiny_model_dir):
    runner = CliRunner()
    for extra, message in (
            (["--backend", "llamacpp", "--pairs-model", str(tiny_model_dir), "--rewrite-model", str(tiny_model_dir)],
             "backend llamacpp needs a .gguf file"),
            (["--pairs-model", str(tiny_model_dir), "--rewrite-model", str(tiny_model_dir), "--structured-output",
              "json_schema"], "the transformers backend has no constrained decoding"),
            (["--pairs-model", str(tiny_model_dir), "--rewrite-model", str(tiny_model_dir), "--structured-output",
              "grammar"], "--structured-output grammar: choose one of")):
        result = runner.invoke(app, ["expand", str(corpus), "-o", str(tmp_path / "o"), *extra])
        assert result.exit_code != 0, extra
        assert isinstance(result.exception, MgaError) and message in str(result.exception), (extra, result.exception)
