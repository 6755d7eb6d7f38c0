"""The endpoint pool: a list of `teacher.base_url`s served as one teacher, balanced, with ejection."""

from __future__ import annotations

import json
import threading

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.protocol import Request
from mga.distill.generate.teacher import make_generator
from pydantic import ValidationError

from tests.fake_openai import Reply


def _requests(n: int) -> list[Request]:
    params = GenerationParams(max_tokens=16)
    return [Request(str(i), [{"role": "user", "content": f"row {i}"}], params) for i in range(n)]


def _cfg(urls, **kw) -> TeacherConfig:
    return TeacherConfig(base_url=urls, model="m", api_key_env="MGA_TEST_NO_KEY", backoff_base_s=0.01,
                         backoff_max_s=0.05, timeout_s=10, **kw)


def test_base_url_accepts_a_string_or_a_list():
    assert TeacherConfig(base_url="http://a/v1").base_urls == ["http://a/v1"]
    assert TeacherConfig(base_url=["http://a/v1"]).base_url == "http://a/v1"  # a list of one is a string
    assert TeacherConfig(base_url=["http://a/v1", "http://b/v1"]).base_urls == ["http://a/v1", "http://b/v1"]
    assert TeacherConfig().base_urls == []
    for bad in ([], ["http://a/v1", "http://a/v1"], [""]):
        with pytest.raises(ValidationError):
            TeacherConfig(base_url=bad)


def test_two_endpoints_share_the_load_by_outstanding_requests(fake_openai, tmp_path):
    fast = fake_openai(lambda body: Reply(content="fast"), latency=0.01)
    slow = fake_openai(lambda body: Reply(content="slow"), latency=0.2)
    accounting = Accounting()
    gen = make_generator(_cfg([fast.url, slow.url], concurrency=4), accounting=accounting, stage="t")
    results = list(gen.run(_requests(120)))
    assert sorted(int(r.request.key) for r in results) == list(range(120))
    assert all(r.ok for r in results)
    # least outstanding requests: the fast server frees its slots sooner, so it answers most requests
    assert len(fast.requests) > 3 * len(slow.requests) > 0
    assert len(fast.requests) + len(slow.requests) == 120
    stats = {name: counts["ok"] for name, counts in accounting.endpoints.items()}
    assert stats == {fast.url: len(fast.requests), slow.url: len(slow.requests)}


def test_per_endpoint_concurrency_is_respected(fake_openai):
    """The other endpoint is down, so all 6 workers (2 endpoints x 3) want the live one: it takes 3 at a time."""
    import time

    from tests.test_teacher import closed_port_url

    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def respond(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return Reply(content="ok")

    one = fake_openai(respond)
    accounting = Accounting()
    gen = make_generator(_cfg([one.url, closed_port_url()], concurrency=3, eject_cooldown_s=60),
                         accounting=accounting, stage="t")
    assert all(r.ok for r in gen.run(_requests(60)))
    assert len(one.requests) == 60 and state["max"] == 3  # the cap is reached and never passed


def test_a_stopped_endpoint_is_ejected_and_no_row_is_lost(fake_openai, tmp_path):
    """One of two servers dies mid-run: every row is answered exactly once, by the survivor after the kill."""
    dead = threading.Event()
    answered: dict[str, int] = {}
    lock = threading.Lock()

    def make(tag):
        def respond(body):
            if tag == "a" and dead.is_set():
                return Reply(drop=True)  # kept-alive connections to the stopped server drop too
            row = body["messages"][-1]["content"]
            with lock:
                answered[row] = answered.get(row, 0) + 1
                if tag == "a" and sum(answered.values()) >= 40:
                    dead.set()
            return Reply(content=f"{tag}:{row}")

        return respond

    a = fake_openai(make("a"), latency=0.01)
    b = fake_openai(make("b"), latency=0.01)
    accounting = Accounting()
    cfg = _cfg([a.url, b.url], concurrency=4, eject_after=2, eject_cooldown_s=60, max_attempts=3)
    gen = make_generator(cfg, cache_path=tmp_path / "cache.sqlite", accounting=accounting, stage="t")
    results = []
    for result in gen.run(_requests(200)):
        results.append(result)
        if len(results) == 60:
            a.stop()
    assert dead.is_set()
    assert sorted(int(r.request.key) for r in results) == list(range(200))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert len(answered) == 200 and set(answered.values()) == {1}  # each row answered once
    counts = accounting.endpoints
    assert counts[a.url]["ejections"] == 1 and counts[a.url]["connect_errors"] >= 2
    assert counts[a.url]["ok"] + counts[b.url]["ok"] == 200
    assert accounting.stage("t").failures == 0
    written = json.loads(accounting.write(tmp_path / "accounting.json").read_text())
    assert written["endpoints"][b.url]["ok"] == counts[b.url]["ok"]


def test_one_endpoint_behaves_as_before_when_unreachable(fake_openai):
    """No ejection with a single endpoint: the run ends with the usual 'cannot reach' error."""
    from mga.distill.generate.teacher import TeacherUnavailable

    server = fake_openai()
    url = server.url
    server.stop()
    gen = make_generator(_cfg(url, max_attempts=2), accounting=Accounting(), stage="t")
    with pytest.raises(TeacherUnavailable, match="cannot reach"):
        list(gen.run(_requests(3)))
