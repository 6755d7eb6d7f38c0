"""One validate-and-re-ask rule (`mga.distill.generate.reask`) for every generator, and one attempts key
(`label.max_validation_attempts`) honoured by `mga run`, `mga label`, `mga expand` and the dry run."""

from __future__ import annotations

import pytest
from mga.distill.core.config import GenerationParams, default_corpus_path
from mga.distill.core.io import read_rows, write_rows
from mga.distill.generate.protocol import Completion, Request
from mga.distill.generate.reask import Asking
from mga.distill.pipeline.dry_run import dry_run
from mga.distill.pipeline.pipeline import run_pipeline
from mga.distill.pipeline.recipe import validate_recipe

from tests.fake_openai import Reply
from tests.test_dry_run import _kind, teacher
from tests.test_expand import _expand, tool_models
from tests.test_expand import corpus as expand_corpus  # noqa: F401 (fixture)

PARAMS = GenerationParams(max_tokens=16)


def _answer(text: str) -> Completion:
    return Completion(text=text, finish_reason="stop")


def test_asking_counts_records_and_decides():
    verdicts = iter([(None, "too short"), (None, "still too short"), ("parsed", None)])
    asking = Asking(Request("k", [], PARAMS), lambda c: next(verdicts), max_attempts=3)
    assert asking.take(_answer("a")) is None and asking.last_rejected and asking.attempt == 1
    assert asking.take(_answer("b")) is None
    result = asking.take(_answer("c"))
    assert result.ok and result.parsed == "parsed" and result.attempts == 3
    assert result.history == ["too short", "still too short"]
    assert [(r["attempt"], r["reason"], r["text"]) for r in result.rejected] == [(1, "too short", "a"),
                                                                                  (2, "still too short", "b")]

    never = Asking(Request("k", [], PARAMS), lambda c: (None, "no"), max_attempts=2)
    assert never.take(_answer("x")) is None
    final = never.take(_answer("y"))
    assert final.error == "no" and final.completion.text == "y" and final.attempts == 2 and len(final.rejected) == 2


def test_a_validator_bug_is_a_rejection_and_the_request_check_wins():
    def broken(completion):
        raise KeyError("oops")

    own = Request("k", [], PARAMS, check=broken)
    result = Asking(own, lambda c: ("run's", None), max_attempts=1).take(_answer("a"))
    assert not result.ok and result.error.startswith("validator error: KeyError")
    assert result.rejected[0]["reason"] == result.error
    unchecked = Asking(Request("k", [], PARAMS), None, max_attempts=5)
    assert unchecked.max_attempts == 1 and unchecked.take(_answer("")).ok


def test_a_failure_after_rejections_keeps_them():
    asking = Asking(Request("k", [], PARAMS), lambda c: (None, "bad"), max_attempts=3)
    asking.take(_answer("a"))
    failed = asking.failed("the teacher refused the request (HTTP 400)")
    assert failed.completion is None and failed.attempts == 2 and failed.history == ["bad"]
    assert failed.rejected[0]["text"] == "a"


def test_batch_mode_keeps_the_rejected_answers(tmp_path):
    from tests.test_batch import _cfg, _run

    from tests.fake_batch import FakeBatchAPI

    api = FakeBatchAPI().start()
    try:
        results, _ = _run(_cfg(api.url), tmp_path, n=3, validate=lambda c: (None, "never good"), max_attempts=2)
    finally:
        api.stop()
    assert all(r.attempts == 2 and [e["attempt"] for e in r.rejected] == [1, 2] for r in results.values())
    assert results["1"].rejected[0]["text"] == "answer: row 1" and results["1"].rejected[0]["reason"] == "never good"


def _empty_rewrites(request):
    """The teacher of tests/test_dry_run.py, answering every rewrite with nothing (rejected each time)."""
    return Reply(content="") if _kind(request) == "rewrite" else teacher(request)


def _rewrites_sent(server) -> int:
    return sum(_kind(body) == "rewrite" for body in server.requests)


@pytest.fixture
def corpus(tmp_path):
    rows = [r for r in read_rows(default_corpus_path()) if len(r["text"].split()) < 400][:4]
    return write_rows(tmp_path / "corpus.jsonl", rows)


def test_run_and_its_dry_run_re_ask_rewrites_label_max_validation_attempts_times(tmp_path, corpus, fake_openai):
    from tests.test_dry_run import _recipe

    server = fake_openai(_empty_rewrites)
    raw = _recipe(tmp_path, corpus, server.url).model_dump(mode="json")
    raw["label"].update(variants=["base"], max_validation_attempts=4)
    cfg = validate_recipe(raw)
    estimate = next(e for e in dry_run(cfg) if e.stage == "label-rewrites@base")
    assert estimate.requests > 0 and estimate.max_requests == 4 * estimate.requests
    run_pipeline(cfg, until="label-rewrites")
    assert _rewrites_sent(server) == estimate.max_requests
    written = read_rows(tmp_path / "run" / "labels" / "rewrites.base.jsonl")
    assert all(row["attempts"] == 4 and len(row["rejected"]) == 4 for row in written)


def test_label_command_and_its_dry_run_honour_the_key(tmp_path, corpus, fake_openai):
    from mga.distill.pipeline.dry_run import label_dry_run

    from tests.test_dry_run import _recipe
    from tests.test_labeling import label_args, mga_inline

    server = fake_openai(_empty_rewrites)
    pairs, rewrites = tmp_path / "pairs.jsonl", tmp_path / "rewrites.jsonl"
    assert mga_inline(*label_args(server.url, corpus, pairs)).exit_code == 0
    raw = _recipe(tmp_path, corpus, server.url).model_dump(mode="json")
    raw["label"]["max_validation_attempts"] = 2
    [estimate] = label_dry_run("rewrite", pairs, rewrites, validate_recipe(raw), variant="base", chunks=False,
                               cache_path=tmp_path / "none.sqlite")
    args = [*label_args(server.url, pairs, rewrites, stage="rewrite"), "--set", "label.max_validation_attempts=2"]
    assert mga_inline(*args).exit_code == 0
    rows = read_rows(rewrites)
    assert rows and estimate.max_requests == 2 * estimate.requests == _rewrites_sent(server) == 2 * len(rows)
    assert all(len(row["rejected"]) == 2 for row in rows)
    assert len(read_rows(tmp_path / "rewrites.rejected.jsonl")) == 2 * len(rows)


def test_expand_honours_max_validation_attempts(expand_corpus, tmp_path, fake_openai):  # noqa: F811
    def empty_rewrites(request):
        return Reply(content="") if request["model"] == "slm-rewrite" else tool_models(request)

    server = fake_openai(empty_rewrites)
    _expand(expand_corpus, tmp_path / "out", server, max_validation_attempts=4)
    rewrites = read_rows(tmp_path / "out" / "rewrites.jsonl")
    assert rewrites and sum(b["model"] == "slm-rewrite" for b in server.requests) == 4 * len(rewrites)
