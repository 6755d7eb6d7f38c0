"""`mga expand`: MGACorpus rows, cleaning and statistics that add up, sharding, resume, and Ray Data = local.

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
from mga.distill.cli.main import app
from mga.distill.core.io import iter_rows, read_rows, write_rows
from mga.distill.expand.expand import expand_corpus, shard_of
from typer.testing import CliRunner

from tests.fake_openai import Reply

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus.jsonl"
PAIRS = {"genres": ["poem", "essay", "letter", "dialogue", "limerick"],
         "audiences": ["children", "teachers", "skeptics", "students", "parents"]}
BROKEN_DOC = "pydoc-break"  # its pairs answer is never valid JSON: a pairs_invalid rejection


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
    options = dict(pairs_model="slm-pairs", rewrite_model="slm-rewrite", backend="openai", base_url=server.url,
                   max_new_tokens=64, show=False)
    return expand_corpus(corpus, out, **{**options, **kwargs})


def _rows(folder: Path) -> tuple[list[dict], list[dict]]:
    return read_rows(folder / "expanded.jsonl"), read_rows(folder / "rejected.jsonl")


def _canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_expand_writes_mgacorpus_rows_and_statistics_that_add_up(corpus, tmp_path, fake_openai):
    server = fake_openai(tool_models)
    result = CliRunner().invoke(app, [
        "expand", str(corpus), "--pairs-model", "slm-pairs", "--rewrite-model", "slm-rewrite", "--backend",
        "openai", "--base-url", server.url, "-o", str(tmp_path / "out"), "--max-new-tokens", "64",
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
        assert set(meta) >= {"docid", "chunk_id", "genre", "audience", "raw_text", "source"}
        assert meta["genre"] in PAIRS["genres"] and meta["audience"] in PAIRS["audiences"]
        assert row["cleaning"]["removed_lines"][0] == "Note: rewritten as required."  # cleaned away
        assert row["content_split"].startswith(meta["raw_text"][:40])
        assert row["variant"] == "base" and row["model"] == "slm-rewrite" and row["finish_reason"] == "stop"
    assert {r["meta"]["docid"] for r in rejected if r["reject"]["reason"] == "pairs_invalid"} == {BROKEN_DOC}
    assert all(r["reject"]["reason"] for r in rejected)
    assert stats["tokens_in"] == sum(len(r["text"].split()) for r in iter_rows(corpus))
    assert stats["tokens_out"] == sum(len(r["content_split"].split()) for r in expanded)
    assert stats["expansion_factor"] == pytest.approx(stats["tokens_out"] / stats["tokens_in"], abs=1e-3)
    assert "token expansion factor" in result.output


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
    assert seen == Counter({r["id"]: 1 for r in iter_rows(corpus)})

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
    for name in ("expanded.jsonl", "rejected.jsonl", "pairs.jsonl", "rewrites.jsonl"):
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
