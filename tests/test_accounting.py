"""The spending ledger: answers and their cost committed together, accounting.json derived from the ledger with
every stage of the run (also a stage whose process never wrote), corrupt files refused by name; a run is its own
id, so a copied folder keeps its history; after a kill -9 every request the endpoint received is either
answered in the ledger or counted in flight with its worst-case cost."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from mga.data import data_path
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
    assert data["ledgers"] == ["cache.sqlite"] and data["run_id"] == (tmp_path / "run-id").read_text().strip()


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


# ---- a run is what it is, not where it lies; a kill leaves nothing uncounted ------------------------------------


def _label(url: str, out, *extra: str):
    from tests.test_labeling import MGA, label_args

    return [*MGA, *label_args(url, data_path("sample", "corpus.jsonl"), out, concurrency=4),
            "--set", "teacher.price_input_per_million=1", "--set", "teacher.price_output_per_million=2", *extra]


def _stages(folder):
    return json.loads((folder / "accounting.json").read_text())["stages"]


def test_a_copied_output_folder_keeps_its_history_and_its_own_ledger(fake_openai, tmp_path):
    import shutil
    import subprocess

    from tests.test_labeling import SECRET, teacher_reply

    server = fake_openai(teacher_reply)
    env = {**os.environ, "MGA_TEST_KEY": SECRET}
    first, copy = tmp_path / "first", tmp_path / "copy"
    assert subprocess.run(_label(server.url, first / "pairs.jsonl"), env=env, capture_output=True).returncode == 0
    history = _stages(first)
    assert history["label-pairs"]["requests"] == server.received > 0
    subprocess.run(["cp", "-a", str(first), str(copy)], check=True)
    shutil.rmtree(first)  # nothing of the copy's history may live in the original's folder
    rerun = subprocess.run(_label(server.url, copy / "pairs.jsonl"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _stages(copy) == history  # all answers cached: the same history, nothing added, nothing lost
    assert json.loads((copy / "accounting.json").read_text())["ledgers"] == [".mga-cache.sqlite"]


def test_after_kill_9_the_endpoint_count_lies_within_answered_plus_in_flight(fake_openai, tmp_path):
    import signal
    import subprocess
    import threading
    import time

    from mga.distill.generate.accounting import Accounting

    from tests.test_labeling import SECRET, teacher_reply

    hang_after = threading.Event()  # set: every request beyond the 20th hangs, so 4 are in flight at the kill

    def responder(body):
        return Reply(hang=True) if hang_after.is_set() and server.received > 20 else teacher_reply(body)

    server = fake_openai(responder)
    hang_after.set()
    env = {**os.environ, "MGA_TEST_KEY": SECRET}
    out = tmp_path / "killed" / "pairs.jsonl"
    proc = subprocess.Popen(_label(server.url, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while server.received < 24 and time.monotonic() < deadline:  # 20 answered, then 4 workers waiting
        time.sleep(0.01)
    time.sleep(0.3)  # nothing more can happen: the 4 workers wait on answers that never come
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert server.received == 24

    teacher = TeacherConfig(price_input_per_million=1.0, price_output_per_million=2.0)
    Accounting.for_teacher(teacher, path=out.parent / "accounting.json").write()  # what the next command does
    killed = _stages(out.parent)["label-pairs"]
    assert killed["requests"] == 20 and killed["in_flight"] == 4  # exact: 20 settled, 4 of unknown outcome
    bound = 4 * teacher.pairs.max_tokens  # each in-flight request can cost at most its max_tokens answer
    assert killed["in_flight_completion_tokens"] == bound and killed["in_flight_max_cost"] > bound * 2 / 1e6
    assert killed["cost"] == pytest.approx((killed["prompt_tokens"] + 2 * killed["completion_tokens"]) / 1e6)

    hang_after.clear()
    resumed = subprocess.run(_label(server.url, out), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    stages = _stages(out.parent)["label-pairs"]
    assert stages["in_flight"] == 4  # still unknown: the endpoint may have billed them
    assert stages["requests"] <= server.received <= stages["requests"] + stages["in_flight"]
