"""The toolkit against a real inference server: llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`)
serving SmolLM2-135M-Instruct on 127.0.0.1, driven through the `mga` commands as a user runs them.

What a server written for the tests cannot show: the chat template applied server-side, usage and
`finish_reason` as llama.cpp fills them, an over-long prompt refused with the server's own 400 message, a
server process killed mid-stage and restarted, a pool of two servers with one stopped. SmolLM2 is untrained for
the task (it rarely writes valid pairs JSON, and as a judge it does not tell the controls apart), so the
checks expect properties of the toolkit, never of the model's answers. Answers are kept short (max_tokens
24-96) so the file runs in a few minutes on one core.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mga.distill.cli.main import app
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import OK, chunk_row, is_control, pairs_row, score_of
from mga.judge.pairs_check import parse_pairs
from mga.judge.parse import parse_judgement
from typer.testing import CliRunner

from tests.llama_server import ALIAS

pytestmark = pytest.mark.real_model

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "corpus.jsonl"
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "en.jsonl"
# no API key from the environment reaches the loopback server; short backoff, two tries per request
ENDPOINT = ["--set", "teacher.api_key_env=MGA_TEST_NO_KEY", "--set", "teacher.backoff_base_s=0.05",
            "--set", "teacher.backoff_max_s=0.2", "--set", "teacher.max_attempts=2", "--set", "teacher.timeout_s=120"]


def mga(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def mga_process(*args: object) -> subprocess.CompletedProcess:
    """The `mga` command as a user runs it: `error:` lines and exit code 2 come from its entry point."""
    command = [sys.executable, "-c", "from mga.distill.cli.main import main; main()", *(str(a) for a in args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def short_documents(n: int) -> list[dict]:
    rows = [r for r in read_rows(SAMPLE) if 25 <= len(r["text"].split()) <= 70]
    assert len(rows) >= n
    return rows[:n]


def pairs_file(path: Path, documents: list[dict], pairs_per_document: int) -> Path:
    """Stage-1 rows with hand-written pairs (SmolLM2 seldom writes valid ones), the input of stage 2."""
    genres = ["a short poem", "a news brief", "a letter to a friend"]
    audiences = ["children aged eight", "retired engineers", "busy nurses"]
    rows = [pairs_row(chunk_row(d["id"], 0, d["text"])["meta"],
                      [{"genre": g, "audience": a} for g, a in zip(genres, audiences)][:pairs_per_document],
                      status=OK, reason=None, model="hand", usage={}, raw_output=None) for d in documents]
    return write_rows(path, rows)


def stage(folder: Path, name: str) -> dict:
    return json.loads((folder / "accounting.json").read_text())["stages"][name]


def rewrite_args(url: str | list[str], pairs: Path, out: Path, max_tokens: int = 24, concurrency: int = 1) -> list:
    urls = [url] if isinstance(url, str) else url
    return ["label", "--stage", "rewrite", "-i", pairs, "-o", out, *(x for u in urls for x in ("--base-url", u)),
            "--model", ALIAS, "--concurrency", concurrency, *ENDPOINT, "--set", f"teacher.rewrite.max_tokens={max_tokens}",
            "--set", "teacher.rewrite.temperature=0", "--set", "label.max_validation_attempts=1"]


def run_in_thread(*args: object) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", mga(*args)), daemon=True)
    thread.start()
    return thread, box


def wait_for_rows(out: Path, n: int, timeout_s: float = 120) -> None:
    """Until `n` rows stand in the stage's output (a .jsonl output is the stream rows are written to as they
    arrive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} rows in {out} within {timeout_s} s")


def test_stage1_through_llama_cpp_and_an_overlong_prompt_fails_alone(llama_server, tmp_path):
    """Stage 1 over three documents, the middle one longer than the server's context (2,048 tokens): that row
    fails with llama.cpp's own message, the others are answered and checked, usage is the server's."""
    short = short_documents(2)
    long_text = " ".join(r["text"] for r in read_rows(SAMPLE))
    long_text = " ".join(long_text.split()[:2200])  # ~3,000 tokens: one chunk (chunk_tokens 4096), over n_ctx
    corpus = write_rows(tmp_path / "corpus.jsonl", [short[0], {"id": "too-long", "text": long_text}, short[1]])
    out = tmp_path / "run" / "pairs.jsonl"
    result = mga("label", "--stage", "pairs", "-i", corpus, "-o", out, "--base-url", llama_server.url, "--model",
                 ALIAS, "--concurrency", 1, *ENDPOINT, "--set", "teacher.pairs.max_tokens=64",
                 "--set", "label.max_validation_attempts=1")
    assert result.exit_code == 0, result.output
    rows = {r["meta"]["docid"]: r for r in read_rows(out)}
    assert set(rows) == {short[0]["id"], "too-long", short[1]["id"]}
    long_row = rows.pop("too-long")
    assert long_row["status"] == "failed" and long_row["raw_output"] is None
    assert "refused the request" in long_row["reason"] and "maximum context length is 2048 tokens" in long_row["reason"]
    for row in rows.values():  # answered: the server's token counts, its finish reason, the parser's verdict
        assert row["prompt_tokens"] > 100 and 0 < row["completion_tokens"] <= 64
        assert row["finish_reason"] in ("stop", "length")
        pairs, reason = parse_pairs(row["raw_output"])
        assert (row["status"], row["reason"]) == (("ok", None) if pairs else ("failed", reason))
    counts = stage(out.parent, "label-pairs")
    assert (counts["requests"], counts["results"], counts["retries"]) == (3, 3, 0)  # a 400 is final, not retried
    assert counts["completion_tokens"] == sum(r["completion_tokens"] for r in rows.values())
    assert "not ok:" in result.output and "the teacher refused the request" in result.output, result.output


def test_stage2_rewrites_are_marked_truncated_at_max_tokens(llama_server, tmp_path):
    """finish_reason=length as llama.cpp reports it: the rewrite is kept and marked truncated, never ok."""
    pairs = pairs_file(tmp_path / "pairs.jsonl", short_documents(2), 1)
    out = tmp_path / "run" / "rewrites.jsonl"
    result = mga(*rewrite_args(llama_server.url, pairs, out, max_tokens=24))
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 2
    for row in rows:
        assert row["finish_reason"] in ("stop", "length") and row["completion_tokens"] <= 24
        if row["finish_reason"] == "length":  # cut: kept and marked, unless the answer checks refused it anyway
            assert row["status"] in ("truncated", "rejected")
        if row["status"] == "truncated":
            assert row["finish_reason"] == "length" and row["content_split"] and "max_tokens=24" in row["reason"]
        assert row["status"] != "ok" or row["finish_reason"] == "stop"
    assert any(r["status"] == "truncated" for r in rows)  # 24 tokens are too few for a rewrite


def test_a_server_killed_mid_stage_and_restarted_resumes_without_paying_twice(llama_servers, tmp_path):
    server = llama_servers()
    pairs = pairs_file(tmp_path / "pairs.jsonl", short_documents(2), 2)
    out = tmp_path / "run" / "rewrites.jsonl"
    args = rewrite_args(server.url, pairs, out, max_tokens=24)
    thread, box = run_in_thread(*args)
    wait_for_rows(out, 2)
    server.kill()  # SIGKILL mid-stage: the request in flight and every later one find no server
    thread.join(timeout=300)
    first = box["result"]
    assert first.exit_code == 0, first.output
    rows = read_rows(out)
    answered = [r for r in rows if r["status"] != "failed"]
    lost = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(answered) >= 2 and lost
    assert all("gave up after 2 attempts" in r["reason"] for r in lost)
    paid_first = stage(out.parent, "label-rewrite")["completion_tokens"]
    assert paid_first == sum(r["completion_tokens"] for r in answered)

    server.start()  # restarted on the same port
    second = mga(*args)
    assert second.exit_code == 0, second.output
    assert f"{len(answered)} rows reused" in second.output
    rows = {(r["meta"]["docid"], r["meta"]["pair_id"]): r for r in read_rows(out)}
    assert len(rows) == 4 and all(r["status"] != "failed" for r in rows.values())  # nothing lost
    for row in answered:  # the rows answered before the kill are kept as they were
        assert rows[(row["meta"]["docid"], row["meta"]["pair_id"])]["content_split"] == row["content_split"]
    counts = stage(out.parent, "label-rewrite")
    # nothing paid twice: the tokens paid in both runs are those of the four rows, once each
    assert counts["completion_tokens"] == sum(r["completion_tokens"] for r in rows.values())
    assert counts["in_flight"] == 0 and counts["results"] == 4 + len(lost)


def test_a_pool_of_two_servers_finishes_on_the_survivor(llama_server, llama_servers, tmp_path):
    other = llama_servers()
    pairs = pairs_file(tmp_path / "pairs.jsonl", short_documents(2), 3)
    out = tmp_path / "run" / "rewrites.jsonl"
    args = rewrite_args([llama_server.url, other.url], pairs, out, max_tokens=24)
    thread, box = run_in_thread(*args, "--set", "teacher.eject_after=1", "--set", "teacher.eject_cooldown_s=600")
    wait_for_rows(out, 1)
    other.kill()  # while it holds a request: the pool must move that request and every later one to the survivor
    thread.join(timeout=300)
    result = box["result"]
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 6 and all(r["status"] != "failed" for r in rows)  # every row answered
    endpoints = json.loads((out.parent / "accounting.json").read_text())["endpoints"]
    survivor, stopped = endpoints[llama_server.url], endpoints[other.url]
    assert survivor["ok"] > 0 and survivor["ok"] + stopped["ok"] == 6
    assert stopped["connect_errors"] >= 1 and stopped["ejections"] == 1  # found down, taken out, not tried again


def reference_subset(path: Path, documents: int, pairs_per_document: int) -> Path:
    """The shortest reference documents, with their first rewrites and scores (a quick calibration)."""
    rows = sorted(read_rows(REFERENCE), key=lambda r: len(r["text"]))[:documents]
    return write_rows(path, [{**r, "pairs": r["pairs"][:pairs_per_document]} for r in rows])


def judge_answers(cache: Path) -> list[str]:
    with sqlite3.connect(cache) as db:
        return [json.loads(answer)["text"] for (answer,) in db.execute("SELECT answer FROM answers")]


def test_llm_judge_calibrates_and_a_judge_failing_its_controls_is_refused(llama_server, tmp_path):
    """SmolLM2 as the LLM judge over two reference rewrites and one document's controls (the other document
    gives the negatives their text). Properties only: the calibration shows the parse rate, agreement and the
    control verdict; an answer the parser refuses is unscored, never a score; `mga judge` exits 2 with the
    controls message exactly when the controls fail."""
    reference = reference_subset(tmp_path / "reference.jsonl", 2, 1)
    judged = tmp_path / "calibration" / "judged.jsonl"
    settings = [*ENDPOINT, "--set", "teacher.concurrency=1", "--set", "judge.controls=1", "--set", "judge.max_parse_attempts=1",
                "--set", "teacher.judge.max_tokens=64"]
    calibration = mga("judge", "--calibrate", "--reference", reference, "-o", judged, "--base-url", llama_server.url,
                      "--model", ALIAS, *settings)
    assert calibration.exit_code == 0, calibration.output
    for shown in ("parsed ", "exact ", "within ±1", "judge controls on 1 documents"):
        assert shown in calibration.output
    rows = read_rows(judged)
    assert len([r for r in rows if not is_control(r)]) == 2 and len([r for r in rows if is_control(r)]) == 3
    answers = judge_answers(judged.parent / "cache" / "judge.sqlite")
    assert len(answers) == len(rows)  # one answer per row (max_parse_attempts=1), none left out
    parsed = [parse_judgement(a)[0] for a in answers]
    # what the parser accepted became the scores, what it refused stayed unscored with its reason
    assert sorted(p["score"] for p in parsed if p) == sorted(s for r in rows if (s := score_of(r)) is not None)
    for row in rows:
        verdict = row["judge"]
        assert (verdict["status"] == "scored") == (verdict["score"] is not None)
        if verdict["status"] == "unscored":
            assert verdict["reason"] and verdict["score"] is None
    scored = sum(score_of(r) is not None for r in rows if not is_control(r))
    assert f"parsed {100 * scored / 2:.1f}%" in calibration.output
    sent = stage(judged.parent, "judge")["requests"]

    # the same rows through `mga judge` in the same folder: every answer comes from the cache
    verdict_run = mga_process("judge", "-i", judged.parent / "reference-rewrites.jsonl", "-o",
                              judged.parent / "again.jsonl", "--base-url", llama_server.url, "--model", ALIAS, *settings)
    said = verdict_run.stdout + verdict_run.stderr
    from mga.judge.controls import control_verdict

    verdict = control_verdict(read_rows(judged.parent / "again.jsonl"))
    assert stage(judged.parent, "judge")["requests"] == sent  # the second run sent nothing
    if verdict["passed"]:
        assert verdict_run.returncode == 0, said
    else:
        assert verdict_run.returncode == 2 and "Traceback" not in said, said
        assert said.count("error: the judge failed its controls") == 1 and "FAILED" in said


def test_expand_with_the_students_gguf_served_by_llama_cpp(llama_server, tmp_path):
    """`mga expand --backend openai` with the student's f16 GGUF export served as both tool models."""
    corpus = write_rows(tmp_path / "corpus.jsonl", short_documents(2))
    out = tmp_path / "expanded"
    result = mga("expand", corpus, "--pairs-model", ALIAS, "--rewrite-model", ALIAS, "--backend", "openai",
                 "--base-url", llama_server.url, "-o", out, "--max-new-tokens", 48, "--max-validation-attempts", 1,
                 "--output-format", "jsonl")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == 2 and stats["pairs_ok"] + stats["pairs_failed"] == 2
    assert stats["rewrites"] == 5 * stats["pairs_ok"]
    assert stats["rejected_by_reason"].get("pairs_invalid", 0) == stats["pairs_failed"]
    rejected = read_rows(out / "rejected.jsonl")
    assert len(rejected) == stats["rejected"] and all(r["reject"]["reason"] for r in rejected)
