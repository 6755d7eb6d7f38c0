"""The spending ledger: answers and their cost committed together, accounting.json derived from the ledger with
every stage of the run (also a stage whose process never wrote), corrupt files refused by name."""

from __future__ import annotations

import json
import sqlite3

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.cache import RequestCache
from mga.distill.generate.protocol import Request
from mga.distill.generate.teacher import OpenAIGenerator

from tests.fake_openai import Reply

PARAMS = GenerationParams(temperature=0.0, max_tokens=16)


def cfg(url):
    return TeacherConfig(base_url=url, model="teacher-x", concurrency=2, api_key_env="MGA_TEST_NO_KEY",
                         price_input_per_million=1.0, price_output_per_million=2.0)


def run(url, accounting, cache, stage, n, tag=""):
    gen = OpenAIGenerator(cfg(url), cache=cache, accounting=accounting, stage=stage)
    return list(gen.run([Request(str(i), [{"role": "user", "content": f"{tag}{stage} {i}"}], PARAMS) for i in range(n)]))


def test_every_stage_is_kept_even_one_whose_process_never_wrote(fake_openai, tmp_path):
    server = fake_openai()
    path, cache_path = tmp_path / "accounting.json", tmp_path / "cache.sqlite"
    first = Accounting.for_teacher(cfg(server.url), path=path)
    run(server.url, first, RequestCache(cache_path), "label-pairs", 3)
    first.write()
    killed = Accounting.for_teacher(cfg(server.url), path=path)  # this "process" dies before writing
    run(server.url, killed, RequestCache(cache_path), "label-rewrite", 4)
    last = Accounting.for_teacher(cfg(server.url), path=path)
    run(server.url, last, RequestCache(cache_path), "judge", 2)
    run(server.url, last, RequestCache(cache_path), "label-pairs", 3)  # a rerun: cache hits, no requests
    data = json.loads(last.write().read_text())
    stages = data["stages"]
    assert list(stages) == ["label-pairs", "label-rewrite", "judge"]
    assert [stages[s]["requests"] for s in stages] == [3, 4, 2] and sum(s["requests"] for s in stages.values()) == server.received
    assert stages["label-pairs"]["cache_hits"] == 3 and stages["label-rewrite"]["results"] == 4
    assert stages["judge"]["cost"] == pytest.approx((stages["judge"]["prompt_tokens"] + 2 * stages["judge"]["completion_tokens"]) / 1e6)
    assert data["ledgers"] == [str(cache_path.resolve())]


def test_answer_and_spend_are_one_transaction(tmp_path):
    from mga.distill.generate.protocol import Completion

    cache = RequestCache(tmp_path / "c.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        cache.put("k", Completion("text", "stop", 3, 4), "m", spend=(None, "s", {"requests": 1}))  # NOT NULL account
    assert cache.get("k") is None and cache.totals("acct") == {}, "a failed spend record must not keep the answer"
    cache.put("k", Completion("text", "stop", 3, 4), "m", spend=("acct", "s", {"requests": 1, "prompt_tokens": 3}))
    assert cache.get("k").text == "text" and cache.totals("acct")["s"]["requests"] == 1


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"stages": 3}'])
def test_a_corrupt_accounting_file_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "accounting.json"
    path.write_text(content)
    with pytest.raises(MgaError, match="accounting.json: corrupt accounting file"):
        Accounting(path=path)
    with pytest.raises(MgaError, match="accounting.json: corrupt accounting file"):
        Accounting().write(path)
    assert path.read_text() == content


def test_judge_takes_base_url_and_model(fake_openai, tmp_path, capsys):
    from mga.distill.cli.main import main
    from mga.distill.core.io import read_rows, write_rows

    server = fake_openai(lambda body: Reply('{"analysis": "same points", "score": 4}'), models=["judge-x"])
    rows = [{"meta": {"docid": "d", "chunk_id": 0, "raw_text": "Owls hunt.", "genre": "g", "audience": "a",
                      "pair_id": 0}, "content_split": "Owls go hunting.", "variant": "base", "status": "ok"}]
    inp = write_rows(tmp_path / "rw.jsonl", rows)
    with pytest.raises(SystemExit) as info:
        main(["judge", "-i", str(inp), "-o", str(tmp_path / "j.jsonl"), "--backend", "llm", "--base-url", server.url,
              "--model", "judge-x", "--set", "teacher.api_key_env=MGA_TEST_NO_KEY", "--set", "judge.controls=0"])
    assert info.value.code == 0, capsys.readouterr().err
    assert [b["model"] for b in server.requests] == ["judge-x"]  # the options name the judge's endpoint
    assert read_rows(tmp_path / "j.jsonl")[0]["judge"]["score"] == 4
    assert json.loads((tmp_path / "accounting.json").read_text())["stages"]["judge"]["requests"] == 1
