"""The teacher client against a real loopback HTTP server with scripted faults: retries, Retry-After, timeouts,
dropped connections, validation retries, the cache, fail-fast on a wrong key or an unreachable host, rate limits,
and the key never leaking."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.cache import RequestCache
from mga.distill.generate.protocol import Request
from mga.distill.generate.ratelimit import TokenBucket
from mga.distill.generate.teacher import OpenAIGenerator, make_generator
from mga.judge.pairs_check import parse_pairs

from tests.fake_openai import Reply, scripted

PARAMS = GenerationParams(temperature=0.0, max_tokens=64)
SECRET = "sk-test-SECRETKEY-0123456789abcdef"


def fast_cfg(url: str, **kw) -> TeacherConfig:
    base = dict(
        base_url=url, model="teacher-x", concurrency=4, timeout_s=0.5, max_attempts=3, backoff_base_s=0.01,
        backoff_max_s=0.05, api_key_env="MGA_TEST_KEY",
    )
    return TeacherConfig(**{**base, **kw})


def requests_for(*markers: str) -> list[Request]:
    return [Request(m, [{"role": "user", "content": f"item {m}"}], PARAMS) for m in markers]


def good_pairs(n: int = 5, tag: str = "") -> str:
    return json.dumps({"pairs": [{"genre": f"genre {i} {tag}", "audience": f"audience {i}"} for i in range(n)]})


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_transient_faults_are_retried_and_counted(fake_openai):
    arrivals: dict[str, list[float]] = {}

    def record(default):
        def respond(body):
            arrivals.setdefault(body["messages"][-1]["content"], []).append(time.monotonic())
            return default(body)

        return respond

    script = {
        "item rate": [Reply(status=429, headers={"Retry-After": "0.3"})],
        "item boom": [Reply(status=500), Reply(status=503)],
        "item slow": [Reply(content="late", delay=1.5)],
        "item drop": [Reply(drop=True)],
        "item bad": [Reply(status=400, error="context length exceeded")],
        "item dead": [Reply(status=500)] * 10,
    }
    server = fake_openai(record(scripted(lambda b: Reply(content="fine " + b["messages"][-1]["content"]), script)))
    accounting = Accounting()
    gen = OpenAIGenerator(fast_cfg(server.url), accounting=accounting, stage="t")
    names = ["rate", "boom", "slow", "drop", "bad", "dead", "plain"]
    results = {r.request.key: r for r in gen.run(requests_for(*names))}

    assert set(results) == set(names)
    for name in ("rate", "boom", "slow", "drop", "plain"):
        assert results[name].ok and results[name].completion.text == f"fine item {name}", results[name].error
    assert not results["bad"].ok and "400" in results["bad"].error and "context length" in results["bad"].error
    assert len(arrivals["item bad"]) == 1  # a 400 is not retried
    assert not results["dead"].ok and "gave up after 3 attempts" in results["dead"].error
    gap = arrivals["item rate"][1] - arrivals["item rate"][0]
    assert gap >= 0.3, f"Retry-After 0.3 s not honoured (retried after {gap:.3f} s)"
    c = accounting.stage("t")
    assert c.requests == len(server.requests) == 1 + 2 + 3 + 2 + 2 + 1 + 3
    assert c.retries == c.requests - len(names)
    assert c.results == len(names) and c.failures == 2
    assert c.prompt_tokens > 0 and c.wall_s > 0


def test_validation_retries_with_new_requests_and_cached_replay(fake_openai, tmp_path):
    script = {
        "item twice": [Reply(content="Sure! {not json"), Reply(content=good_pairs(4))],
        "item never": [Reply(content="")] * 10,
    }
    server = fake_openai(scripted(lambda b: Reply(content="```json\n" + good_pairs(tag=b["messages"][0]["content"]) + "\n```"), script))
    cache = RequestCache(tmp_path / "cache.sqlite")
    gen = OpenAIGenerator(fast_cfg(server.url), cache=cache, stage="pairs")

    def validate(completion):
        return parse_pairs(completion.text, 5)

    first = {r.request.key: r for r in gen.run(requests_for("twice", "never", "once"), validate=validate, max_attempts=3)}
    assert first["once"].ok and len(first["once"].parsed) == 5 and first["once"].attempts == 1
    assert first["twice"].ok and first["twice"].attempts == 3
    assert first["twice"].history == ["no JSON object or array in the answer", "4 pairs instead of 5"]
    assert not first["never"].ok and first["never"].error == "empty answer" and len(first["never"].history) == 3
    sent = len(server.requests)
    assert sent == 1 + 3 + 3

    again = {r.request.key: r for r in gen.run(requests_for("twice", "never", "once"), validate=validate, max_attempts=3)}
    assert len(server.requests) == sent, "a rerun must be answered from the cache"
    for key in first:
        assert (again[key].ok, again[key].parsed, again[key].history) == (first[key].ok, first[key].parsed, first[key].history)
        assert again[key].completion.cached


def test_cache_key_covers_the_endpoint_unless_a_namespace_is_named(fake_openai, tmp_path):
    one, two = fake_openai(), fake_openai()
    cache = RequestCache(tmp_path / "cache.sqlite")
    list(OpenAIGenerator(fast_cfg(one.url), cache=cache).run(requests_for("a")))
    list(OpenAIGenerator(fast_cfg(one.url + "/"), cache=cache).run(requests_for("a")))
    assert len(one.requests) == 1, "the same endpoint (trailing slash aside) is answered from the cache"
    list(OpenAIGenerator(fast_cfg(two.url), cache=cache).run(requests_for("a")))
    assert len(two.requests) == 1, "another server under the same model name is asked, not served old answers"
    for server in (one, two):  # a named namespace shares answers between servers of the same weights
        list(OpenAIGenerator(fast_cfg(server.url, cache_namespace="replicas"), cache=cache).run(requests_for("b")))
    assert len(one.requests) == 2 and len(two.requests) == 1
    hotter = [Request("a", r.messages, GenerationParams(temperature=0.5, max_tokens=64)) for r in requests_for("a")]
    list(OpenAIGenerator(fast_cfg(two.url), cache=cache).run(hotter))
    list(OpenAIGenerator(fast_cfg(two.url, model="other"), cache=cache).run(requests_for("a")))
    assert len(two.requests) == 3


def test_wrong_key_fails_the_run_once_without_leaking_it(fake_openai, tmp_path, monkeypatch):
    server = fake_openai(api_key="the-right-key")
    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    gen = OpenAIGenerator(fast_cfg(server.url), cache=RequestCache(tmp_path / "c.sqlite"))
    with pytest.raises(MgaError) as info:
        list(gen.run(requests_for(*map(str, range(50)))))
    message = str(info.value)
    assert "refused the API key (401)" in message and "MGA_TEST_KEY" in message
    assert SECRET not in message and len(message.splitlines()) == 1
    assert SECRET.encode() not in (tmp_path / "c.sqlite").read_bytes()


def test_key_reaches_the_server_but_never_the_cache(fake_openai, tmp_path, monkeypatch):
    server = fake_openai(api_key=SECRET)
    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    cache_path = tmp_path / "c.sqlite"
    results = list(OpenAIGenerator(fast_cfg(server.url), cache=RequestCache(cache_path)).run(requests_for("a", "b")))
    assert all(r.ok for r in results)
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f


def test_redacts_keys_echoed_in_server_errors(fake_openai, monkeypatch):
    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    server = fake_openai(lambda b: Reply(status=400, error=f"bad request for key {SECRET} and sk-other-abcdef12345"))
    results = []
    with pytest.raises(MgaError) as info:  # every request failed: the run fails, naming the last reason
        results.extend(OpenAIGenerator(fast_cfg(server.url, fail_fast_after=5)).run(requests_for("a")))
    (result,) = results
    assert "400" in result.error and SECRET not in result.error and "sk-other" not in result.error
    assert "every one of the 1 requests" in str(info.value) and "400" in str(info.value)
    assert SECRET not in str(info.value) and "sk-other" not in str(info.value)


def test_unreachable_base_url_fails_fast_with_one_line():
    gen = OpenAIGenerator(fast_cfg(closed_port_url(), max_attempts=2))
    with pytest.raises(MgaError) as info:
        list(gen.run(requests_for(*map(str, range(200)))))
    assert "cannot reach the teacher at http://127.0.0.1:" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert gen.counters.requests == 0  # the preflight said so: none of the 200 requests was tried


def test_unknown_model_fails_the_run(fake_openai):
    server = fake_openai(lambda b: Reply(status=404, error="model 'nope' does not exist"))
    with pytest.raises(MgaError, match="no model 'teacher-x'"):
        list(OpenAIGenerator(fast_cfg(server.url)).run(requests_for("a", "b")))


def test_consumer_can_stop_early_without_hanging(fake_openai):
    server = fake_openai(latency=0.2)
    gen = OpenAIGenerator(fast_cfg(server.url, timeout_s=30))
    for result in gen.run(requests_for(*map(str, range(100)))):
        assert result.ok
        break
    assert len(server.requests) <= 2 * gen.cfg.concurrency  # those in flight when it stopped, not the 100


def test_no_key_for_openai_itself_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MGA_TEST_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MgaError, match=r"no API key for OpenAI: set \$MGA_TEST_KEY"):
        OpenAIGenerator(fast_cfg(None))


def test_logprobs_are_requested_and_returned(fake_openai):
    entry = {"token": "5", "logprob": -0.1, "bytes": None, "top_logprobs": [{"token": "5", "logprob": -0.1, "bytes": None}]}
    server = fake_openai(lambda b: Reply(content="5", logprobs=[entry]))
    request = Request("a", [{"role": "user", "content": "score"}], PARAMS, logprobs=True)
    (result,) = make_generator(fast_cfg(server.url)).run([request])
    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 5
    assert result.completion.logprobs[0]["token"] == "5"


def test_token_bucket_limits_the_rate(monkeypatch):
    """On a virtual clock: a burst passes without waiting, what is beyond it waits for the refill."""
    from types import SimpleNamespace

    from mga.distill.generate import ratelimit

    clock = SimpleNamespace(now=0.0)

    async def sleep(seconds: float) -> None:
        clock.now += seconds + 1e-9  # as a real sleep, never short (a float-exact refill could fall short)

    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(ratelimit, "asyncio", SimpleNamespace(sleep=sleep, Lock=asyncio.Lock))

    async def take(n: int) -> float:
        bucket, started = TokenBucket(per_minute=600), clock.now  # 10 per second, bursts of 60
        for _ in range(n):
            await bucket.acquire(1)
        return clock.now - started

    assert asyncio.run(take(60)) == 0.0
    assert asyncio.run(take(70)) == pytest.approx(1.0)  # 10 beyond the burst at 10 a second


def test_requests_per_minute_applies_to_the_generator(fake_openai):
    server = fake_openai()
    gen = OpenAIGenerator(fast_cfg(server.url, requests_per_minute=300))  # 5/s, bursts of 30
    started = time.monotonic()
    assert all(r.ok for r in gen.run(requests_for(*map(str, range(35)))))
    assert time.monotonic() - started >= 0.8
