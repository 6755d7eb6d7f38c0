"""`teacher.mode: batch` against a loopback fake of /v1/files and /v1/batches (tests/fake_batch.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.cache import RequestCache
from mga.distill.generate.protocol import Request
from mga.distill.generate.teacher import make_generator

from tests.fake_batch import FakeBatchAPI

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def batch_api():
    servers = []

    def start(*args, **kwargs):
        servers.append(FakeBatchAPI(*args, **kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _cfg(url: str, **kw) -> TeacherConfig:
    settings = dict(batch_poll_s=0.01, batch_poll_max_s=0.02, price_input_per_million=2.0,
                    price_output_per_million=8.0, backoff_base_s=0.01)
    return TeacherConfig(base_url=url, model="m", api_key_env="MGA_TEST_NO_KEY", mode="batch", **{**settings, **kw})


def _requests(n: int) -> list[Request]:
    params = GenerationParams(max_tokens=32)
    return [Request(str(i), [{"role": "user", "content": f"row {i}"}], params) for i in range(n)]


def _run(cfg, tmp_path, n=7, accounting=None, **kw):
    accounting = accounting or Accounting.for_teacher(cfg)
    gen = make_generator(cfg, cache_path=tmp_path / "cache.sqlite", accounting=accounting, stage="label")
    return {r.request.key: r for r in gen.run(_requests(n), **kw)}, accounting


def test_batch_completes_into_the_cache_at_the_batch_price(batch_api, tmp_path):
    api = batch_api(["complete"])
    results, accounting = _run(_cfg(api.url), tmp_path)
    assert sorted(results, key=int) == [str(i) for i in range(7)]
    assert all(r.ok and r.completion.text == f"answer: row {k}" for k, r in results.items())
    assert api.uploads == 1 and len(api.batches) == 1
    assert len(RequestCache(tmp_path / "cache.sqlite")) == 7
    counters = accounting.stage("label")
    assert counters.requests == 7 and counters.batch_prompt_tokens == counters.prompt_tokens > 0
    online_price = (counters.prompt_tokens * 2.0 + counters.completion_tokens * 8.0) / 1e6
    assert accounting.cost(counters) == pytest.approx(0.5 * online_price)
    state = json.loads((tmp_path / "batches.json").read_text())["batches"]
    assert [b["id"] for b in state] == ["batch-1"] and state[0]["done"]
    again, acc2 = _run(_cfg(api.url), tmp_path)  # a rerun is served from the cache: no new batch
    assert len(api.batches) == 1 and acc2.stage("label").cache_hits == 7 and all(r.ok for r in again.values())


def test_requests_are_split_at_the_batch_limits(batch_api, tmp_path):
    api = batch_api()
    results, _ = _run(_cfg(api.url, batch_max_requests=3), tmp_path)
    assert len(api.batches) == 3 and all(r.ok for r in results.values())
    assert sorted(api.submitted_ids()) == sorted(set(api.submitted_ids()))


def test_partial_failure_resubmits_only_the_failed_lines(batch_api, tmp_path):
    api = batch_api(["partial", "complete"])
    results, accounting = _run(_cfg(api.url), tmp_path)
    assert all(r.ok for r in results.values())
    assert len(api.batches) == 2
    ids = api.submitted_ids()
    assert len(ids) == 7 + 3  # lines 0, 3, 6 of the first batch failed and were sent again, alone
    assert accounting.stage("label").requests == 7


def test_failed_lines_are_errors_when_resubmits_are_spent(batch_api, tmp_path):
    api = batch_api(["partial"])
    results, accounting = _run(_cfg(api.url, batch_max_resubmits=0), tmp_path)
    failed = [r for r in results.values() if not r.ok]
    assert len(failed) == 3 and all("HTTP 500" in r.error and "scripted 500" in r.error for r in failed)
    assert accounting.stage("label").failures == 3


def test_expired_batch_falls_back_online(batch_api, tmp_path):
    api = batch_api(["expire"])
    results, accounting = _run(_cfg(api.url, batch_fallback="online"), tmp_path)
    assert all(r.ok for r in results.values())
    assert len(api.batches) == 1 and len(api.online) == 4  # 3 of 7 answered before expiry, 4 sent online
    counters = accounting.stage("label")
    assert counters.requests == 7 and 0 < counters.batch_prompt_tokens < counters.prompt_tokens


def test_a_failed_batch_is_resubmitted(batch_api, tmp_path):
    api = batch_api(["fail"])
    results, _ = _run(_cfg(api.url), tmp_path)
    assert all(r.ok for r in results.values()) and len(api.batches) == 2


def test_validation_rounds_ask_again_in_a_new_batch(batch_api, tmp_path):
    api = batch_api()
    seen: dict[str, int] = {}

    def validate(completion):
        seen[completion.text] = seen.get(completion.text, 0) + 1
        return (None, None) if seen[completion.text] > 1 or "row 1" not in completion.text else (None, "try again")

    results, accounting = _run(_cfg(api.url), tmp_path, validate=validate, max_attempts=2)
    assert all(r.ok for r in results.values()) and results["1"].attempts == 2 and results["1"].history == ["try again"]
    assert len(api.batches) == 2 and accounting.stage("label").invalid == 1


def test_budget_refuses_a_batch_that_could_exceed_it(batch_api, tmp_path):
    from mga.distill.generate.budget import BudgetExceeded

    api = batch_api()
    with pytest.raises(BudgetExceeded, match="max_budget_usd"):
        _run(_cfg(api.url, max_budget_usd=0.0001), tmp_path)
    assert api.uploads == 0


def test_killed_run_resumes_polling_without_resubmitting(batch_api, tmp_path):
    """kill -9 while the batch is in progress; the rerun polls the recorded batch and submits nothing."""
    api = batch_api(["hold"])
    script = (
        "import sys; from pathlib import Path; from tests.test_batch import _cfg, _run; "
        "_run(_cfg(sys.argv[1], batch_poll_s=0.05, batch_poll_max_s=0.05), Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, api.url, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and api.polls.get("batch-1", 0) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp_path / "batches.json").read_text())["batches"][0]["id"] == "batch-1"
    api.release()
    results, accounting = _run(_cfg(api.url), tmp_path)
    assert all(r.ok for r in results.values()) and len(results) == 7
    assert api.uploads == 1 and len(api.batches) == 1 and len(api.submitted_ids()) == 7
    assert accounting.stage("label").requests == 7
