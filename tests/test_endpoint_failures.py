"""Endpoints fail fast and clear: unreachable, malformed, hanging, wrong-model and wrong-key endpoints end in
seconds with one line naming the URL; a stage where every request failed exits non-zero however few there
were; without a terminal a plain progress line appears while the stage runs; Ctrl-C says how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import chunk_row
from mga.distill.generate.protocol import Request
from mga.distill.generate.teacher import OpenAIGenerator

from tests.fake_openai import Reply
from tests.test_teacher import closed_port_url

PARAMS = GenerationParams(temperature=0.0, max_tokens=32)
MGA = [sys.executable, "-c", "from mga.distill.cli.main import main; main()"]


def cfg(url: str, **kw) -> TeacherConfig:
    base = dict(base_url=url, model="teacher-x", concurrency=2, timeout_s=30, max_attempts=6, backoff_base_s=0.5,
                api_key_env="MGA_TEST_NO_KEY")
    return TeacherConfig(**{**base, **kw})


def requests(n: int = 3) -> list[Request]:
    return [Request(str(i), [{"role": "user", "content": f"item {i}"}], PARAMS) for i in range(n)]


def fails_fast(gen: OpenAIGenerator, match: str) -> None:
    """One line from the preflight, before any chat request (no retries, no backoff)."""
    with pytest.raises(MgaError, match=match) as info:
        list(gen.run(requests()))
    assert gen.counters.requests == 0 and gen.counters.retries == 0
    assert len(str(info.value).splitlines()) == 1


def test_unreachable_endpoint_fails_at_once_naming_the_url():
    url = closed_port_url()
    fails_fast(OpenAIGenerator(cfg(url)), f"cannot reach the teacher at {url}")


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "http://", "http://host:notaport/v1"])
def test_malformed_base_url_is_refused_before_any_request(url):
    with pytest.raises(MgaError, match="teacher.base_url"):
        OpenAIGenerator(cfg(url))


def test_wrong_model_and_wrong_key_fail_at_preflight(fake_openai):
    server = fake_openai(models=["served-model"])
    fails_fast(OpenAIGenerator(cfg(server.url)), r"has no model 'teacher-x' \(it serves: served-model\)")
    assert server.received == 0 and server.model_lists == 1, "no chat call before the endpoint is known good"
    locked = fake_openai(api_key="the-right-key")
    fails_fast(OpenAIGenerator(cfg(locked.url)), r"refused the API key \(401\)")
    assert locked.received == 0


def test_a_hanging_model_list_only_warns_and_chat_calls_proceed(fake_openai):
    server = fake_openai(hang_models=True)
    results = list(OpenAIGenerator(cfg(server.url)).run(requests()))
    assert all(r.ok for r in results) and server.model_lists == 1 and server.received == len(results) == 3


def test_every_request_failed_is_an_error_however_few(fake_openai):
    server = fake_openai(lambda body: Reply(status=500))
    gen = OpenAIGenerator(cfg(server.url, max_attempts=2, backoff_base_s=0.01, fail_fast_after=50))
    seen = []
    with pytest.raises(MgaError, match=r"every one of the 2 requests .* failed .*HTTP 500"):
        seen.extend(gen.run(requests(2)))
    assert len(seen) == 2 and not any(r.ok for r in seen)


def test_hanging_requests_time_out_and_are_counted(fake_openai):
    server = fake_openai(lambda body: Reply(hang=True) if "item 0" in body["messages"][-1]["content"] else Reply("ok"))
    gen = OpenAIGenerator(cfg(server.url, timeout_s=0.3, max_attempts=2, backoff_base_s=0.01))
    results = {r.request.key: r for r in gen.run(requests(3))}
    assert not results["0"].ok and "timeout" in results["0"].error and results["1"].ok
    assert gen.counters.requests == server.received == 4 and gen.counters.failures == 1


def label_cmd(url: str, inp, out) -> list[str]:
    return [*MGA, "label", "--stage", "pairs", "-i", str(inp), "-o", str(out), "--base-url", url, "--model",
            "teacher-x", "--concurrency", "1", "--set", "teacher.api_key_env=MGA_TEST_NO_KEY"]


def test_plain_progress_lines_without_a_terminal_and_ctrl_c_says_how_to_resume(fake_openai, tmp_path):
    server = fake_openai(lambda body: Reply('{"pairs": [{"genre": "g", "audience": "a"}]}'), latency=0.1)
    inp = write_rows(tmp_path / "chunks.jsonl", [chunk_row(str(i), 0, f"Text {i}.") for i in range(1000)])
    log = tmp_path / "stderr.log"
    env = {**os.environ, "MGA_PROGRESS_EVERY": "0.3"}
    with open(log, "w") as err:
        # a pytest started in the background (`nohup ... &`) ignores SIGINT, and its children would inherit that
        proc = subprocess.Popen([*label_cmd(server.url, inp, tmp_path / "pairs.jsonl"), "--set", "label.num_pairs=1"],
                                stderr=err, stdout=subprocess.DEVNULL, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while server.received < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        # CPython drops a KeyboardInterrupt that lands in a finalizer or weakref callback ("Exception ignored
        # in ..."); a user then presses Ctrl-C again, and so does this test (988 requests remain, about 100 s,
        # so the run cannot have finished by itself)
        for _ in range(5):
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            proc.kill()
            code = proc.wait()
        assert code == 130
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("stage 1: pairs: ")]
    assert len(lines) >= 2, text
    assert "/1,000 (" in lines[0] and "/s" in lines[0] and "failed" in lines[0] and "ETA" in lines[-1]
    assert "interrupted; rerun the same command to resume" in text and "Traceback" not in text
    done = read_rows(tmp_path / "pairs.jsonl")
    assert 0 < len(done) < 1000
