"""Stage 1 and stage 2 end to end against the loopback server: the fault script, counts that add up, free
reruns, kill -9 + resume giving the same rows, bad input, failing endpoints, and the key never written."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mga.data import data_path
from mga.distill.core.config import CorpusConfig, GenerationParams, TeacherConfig
from mga.distill.core.io import read_rows
from mga.distill.core.prompts import pairs_messages, rewrite_messages
from mga.distill.core.schema import chunk_key, rewrite_key
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.teacher import make_generator
from mga.distill.label.chunk import chunk_corpus
from mga.distill.label.labeling import label_pairs, label_rewrites

from tests.fake_openai import Reply

SECRET = "sk-test-SECRETKEY-labeling-0123456789"
PARAMS = GenerationParams(temperature=0.0, max_tokens=128)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def teacher_reply(body: dict) -> Reply:
    """Deterministic answers: pairs for a stage-1 prompt, a rewrite for a stage-2 prompt; faults by digest."""
    user = body["messages"][-1]["content"]
    h = digest(user)
    if '"pairs"' in user:  # stage 1
        fault = int(h, 16) % 10
        if fault == 0:
            return Reply(content='{"pairs": [{"genre": "broken"')  # malformed JSON, every time
        if fault == 1:
            return Reply(content=json.dumps({"pairs": [{"genre": f"g{i}", "audience": f"a{i}"} for i in range(4)]}))
        pairs = [{"genre": f"genre {i} of {h}", "audience": f"audience {i} of {h}"} for i in range(5)]
        return Reply(content="Here you are:\n```json\n" + json.dumps({"pairs": pairs}) + "\n```")
    fault = int(h, 16) % 12
    if fault == 0:
        return Reply(content="", finish_reason="stop")
    if fault == 1:
        return Reply(content="a rewrite cut in the mid", finish_reason="length")
    if fault == 2:
        return Reply(status=400, error="prompt too long")
    return Reply(content=f"rewrite {h}")


def flaky(default):
    """Transient faults on the first sight of some requests: 429 + Retry-After, 500, a slow answer, a drop."""
    seen: set[str] = set()

    def respond(body):
        user = body["messages"][-1]["content"]
        h = digest(user)
        first = h not in seen
        seen.add(h)
        if first:
            kind = int(h[-2:], 16) % 8
            if kind == 0:
                return Reply(status=429, headers={"Retry-After": "0.05"})
            if kind == 1:
                return Reply(status=500)
            if kind == 2:
                return Reply(content="too late", delay=1.0)
            if kind == 3:
                return Reply(drop=True)
        return default(body)

    return respond


def teacher_cfg(url: str, **kw) -> TeacherConfig:
    base = dict(
        base_url=url, model="teacher-x", concurrency=8, timeout_s=0.5, max_attempts=4, backoff_base_s=0.01,
        backoff_max_s=0.05, api_key_env="MGA_TEST_KEY",
    )
    return TeacherConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def chunks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chunks") / "chunks.jsonl"
    return chunk_corpus(data_path("sample", "corpus.jsonl"), out, CorpusConfig(chunk_tokens=512, sample_size=12))


def test_both_stages_under_the_fault_script(fake_openai, chunks, tmp_path):
    server = fake_openai(flaky(teacher_reply))
    accounting = Accounting(price_input_per_million=1.0, price_output_per_million=2.0)
    cfg = teacher_cfg(server.url)
    cache = tmp_path / "cache.sqlite"
    gen = make_generator(cfg, cache_path=cache, accounting=accounting, stage="label-pairs")
    pairs_out = label_pairs(chunks, tmp_path / "pairs.jsonl", gen, params=PARAMS)

    chunk_rows = read_rows(chunks)
    rows = read_rows(pairs_out)
    assert [chunk_key(r) for r in rows] == [chunk_key(r) for r in chunk_rows]  # one row per chunk, in order
    status = Counter(r["status"] for r in rows)
    assert set(status) == {"ok", "failed"} and status["ok"] + status["failed"] == len(chunk_rows)
    for row in rows:
        if row["status"] == "ok":
            assert len(row["pairs"]) == 5 and row["reason"] is None
        else:
            assert row["reason"] and ("pairs instead of 5" in row["reason"] or "JSON" in row["reason"])
            assert row["attempts"] == 3 and row["raw_output"] is not None
    counters = accounting.stage("label-pairs")
    assert counters.results == len({r["meta"]["raw_text"] for r in chunk_rows}) or counters.results == len(chunk_rows)
    assert counters.requests == len(server.requests) and counters.retries > 0

    gen2 = make_generator(cfg, cache_path=cache, accounting=accounting, stage="label-rewrite")
    rewrites = read_rows(label_rewrites(pairs_out, tmp_path / "rewrites.parquet", gen2, params=PARAMS))
    assert not (tmp_path / "rewrites.parquet.partial.jsonl").exists()
    assert len(rewrites) == 5 * status["ok"]
    by_status = Counter(r["status"] for r in rewrites)
    assert set(by_status) == {"ok", "empty", "truncated", "failed"}
    for row in rewrites:
        meta = row["meta"]
        assert {"docid", "chunk_id", "genre", "audience", "raw_text", "pair_id"} <= set(meta)
        assert row["variant"] == "base" and row["model"] == "teacher-x"
        assert (row["reason"] is None) == (row["status"] == "ok")
        if row["status"] == "truncated":
            assert row["finish_reason"] == "length" and row["content_split"]
        if row["status"] == "failed":
            assert "400" in row["reason"] and row["content_split"] == ""

    sent = len(server.requests)
    gen3 = make_generator(cfg, cache_path=cache, stage="again")
    assert read_rows(label_pairs(chunks, tmp_path / "pairs.jsonl", gen3, params=PARAMS)) == rows
    assert read_rows(label_rewrites(pairs_out, tmp_path / "rewrites.parquet", gen3, params=PARAMS)) == rewrites
    assert len(server.requests) == sent, "a rerun of finished stages must send no request"

    (tmp_path / "pairs.jsonl").unlink()
    (tmp_path / "rewrites.parquet").unlink()
    assert read_rows(label_pairs(chunks, tmp_path / "pairs.jsonl", gen3, params=PARAMS)) == rows
    assert read_rows(label_rewrites(pairs_out, tmp_path / "rewrites.parquet", gen3, params=PARAMS)) == rewrites
    # without the outputs, only the requests that got no answer (the 400s) are asked again; answers are cached
    assert len(server.requests) == sent + by_status["failed"]

    path = accounting.write(tmp_path / "accounting.json")
    saved = json.loads(path.read_text())["stages"]
    assert saved["label-pairs"]["requests"] + saved["label-rewrite"]["requests"] == sent
    assert saved["label-rewrite"]["cost"] > 0


def test_resume_skips_rows_already_written(fake_openai, chunks, tmp_path):
    server = fake_openai(teacher_reply)
    out = tmp_path / "pairs.jsonl"
    full = read_rows(label_pairs(chunks, out, make_generator(teacher_cfg(server.url)), params=PARAMS))
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:10]) + lines[10][:25])  # ten rows and a torn eleventh
    before = len(server.requests)
    again = read_rows(label_pairs(chunks, out, make_generator(teacher_cfg(server.url)), params=PARAMS))
    assert again == full
    failed_chunks = sum(r["status"] == "failed" for r in full[10:])
    assert len(server.requests) - before == len(full) - 10 + 2 * failed_chunks


def test_zh_prompts_render_and_ask_for_chinese():
    system, user = pairs_messages("一段文字", "zh", 5)
    assert "一段文字" in user["content"] and "5" in user["content"] and "中文" in user["content"]
    for variant in ("base", "strict", "relaxed"):
        messages = rewrite_messages("原文", "科普文章", "中学生", variant, "zh")
        assert "科普文章" in messages[1]["content"] and "中文" in messages[1]["content"]
        assert messages[1]["content"] != rewrite_messages("原文", "科普文章", "中学生", variant, "en")[1]["content"]


# ---- the command ------------------------------------------------------------------------------------------------
# In-process through typer where only the outcome matters; in a subprocess where the process itself is the point
# (kill -9, the exit code and the one `error:` line printed by `main`).

MGA = [sys.executable, "-c", "from mga.distill.cli.main import main; main()"]


def mga(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "MGA_TEST_KEY": SECRET, **(env or {})}
    return subprocess.run([*MGA, *args], capture_output=True, text=True, env=full_env, timeout=120)


def mga_inline(*args: str):
    from mga.distill.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args), env={"MGA_TEST_KEY": SECRET})


def label_args(url: str, inp: Path, out: Path, stage: str = "pairs", concurrency: int = 4) -> list[str]:
    return [
        "label", "--stage", stage, "--input", str(inp), "--output", str(out), "--base-url", url,
        "--model", "teacher-x", "--concurrency", str(concurrency), "--set", "teacher.api_key_env=MGA_TEST_KEY",
        "--set", "teacher.backoff_base_s=0.01", "--set", "teacher.max_attempts=2", "--set", "teacher.timeout_s=5",
    ]


def test_kill_9_then_resume_gives_the_same_rows(fake_openai, tmp_path):
    server = fake_openai(teacher_reply, latency=0.05)
    corpus = data_path("sample", "corpus.jsonl")
    clean = mga_inline(*label_args(server.url, corpus, tmp_path / "clean" / "pairs.jsonl"))
    assert clean.exit_code == 0, clean.output
    expected = read_rows(tmp_path / "clean" / "pairs.jsonl")
    clean_requests = len(server.requests)

    server.requests.clear()
    received_before = server.received
    out = tmp_path / "killed" / "pairs.jsonl"
    proc = subprocess.Popen(
        [*MGA, *label_args(server.url, corpus, out)], env={**os.environ, "MGA_TEST_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while len(server.requests) < clean_requests // 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(server.requests) < clean_requests
    resumed = mga_inline(*label_args(server.url, corpus, out))
    assert resumed.exit_code == 0, resumed.output
    assert read_rows(out) == expected
    duplicates = len(server.requests) - clean_requests
    assert 0 <= duplicates <= 4, f"{duplicates} duplicate requests (concurrency 4)"

    received = server.received - received_before
    server.requests.clear()
    rerun = mga_inline(*label_args(server.url, corpus, out))
    assert rerun.exit_code == 0 and len(server.requests) == 0
    assert "0 to go" in rerun.output
    stages = json.loads((out.parent / "accounting.json").read_text())["stages"]
    # the killed run's spending survived in the ledger: every request the endpoint received is counted, but
    # for those in flight at the kill (concurrency 4); the rerun added nothing
    assert received - 4 <= stages["label-pairs"]["requests"] <= received, (stages, received)
    assert stages["label-pairs"]["prompt_tokens"] > 0 and list(stages) == ["label-pairs"]

def test_bad_rows_and_failing_endpoints_via_the_command(fake_openai, tmp_path):
    server = fake_openai(teacher_reply, api_key=SECRET)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(
        b'{"id": "a", "text": "First document.\\n\\nIt has two paragraphs."}\n'
        b'{"id": "b", "text": ""}\n'
        b'{"id": "c", "text": "\xff\xfe broken bytes"}\n'
        b'{"id": "d", "title": "no text"}\n'
        b'{"id": "e", "text": "Another good document."}\n'
    )
    out = tmp_path / "run" / "pairs.jsonl"
    ok = mga_inline(*label_args(server.url, corpus, out))
    assert ok.exit_code == 0, ok.output
    warnings = [line for line in ok.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all("skipped" in w for w in warnings)
    assert [r["meta"]["docid"] for r in read_rows(out)] == ["a", "e"]
    written = out.read_bytes()

    with open(corpus, "ab") as f:
        f.write(b'{"id": "f", "text": "A third good document."}\n')
    from tests.test_teacher import closed_port_url

    bad = mga(*label_args(closed_port_url(), corpus, out))  # the real process: exit 2 and one `error:` line
    assert bad.returncode == 2, bad.stderr
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the teacher at http://127.0.0.1:" in errors[0], bad.stderr
    assert "Traceback" not in bad.stderr
    assert out.read_bytes() == written, "rows already written must survive a failed run"

    from mga.distill.core.errors import MgaError

    refused = mga_inline(*label_args(server.url, corpus, out), "--set", "teacher.api_key=sk-wrong-key-00000000")
    assert isinstance(refused.exception, MgaError), refused.output
    assert "refused the API key (401)" in str(refused.exception) and len(str(refused.exception).splitlines()) == 1
    assert "sk-wrong" not in str(refused.exception) + refused.output
    assert out.read_bytes() == written

    for f in (tmp_path / "run").iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in ok.output


def test_rewrite_stage_via_the_command_with_variants(fake_openai, chunks, tmp_path):
    from mga.distill.core.errors import MgaError

    server = fake_openai(teacher_reply)
    pairs = tmp_path / "pairs.jsonl"
    assert mga_inline(*label_args(server.url, chunks, pairs)).exit_code == 0
    ok_chunks = sum(r["status"] == "ok" for r in read_rows(pairs))
    for variant in ("strict", "relaxed"):
        out = tmp_path / f"rewrites-{variant}.parquet"
        result = mga_inline(*label_args(server.url, pairs, out, stage="rewrite"), "--variant", variant)
        assert result.exit_code == 0, result.output
        rows = read_rows(out)
        assert len(rows) == 5 * ok_chunks and {r["variant"] for r in rows} == {variant}
        assert len({rewrite_key(r) for r in rows}) == len(rows)
    bad = mga_inline(*label_args(server.url, pairs, tmp_path / "x.jsonl", stage="rewrite"), "--variant", "wild")
    assert isinstance(bad.exception, MgaError) and "unknown prompt variant 'wild'" in str(bad.exception)
