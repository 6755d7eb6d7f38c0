"""Content-keyed resume: a rerun redoes exactly the rows whose input changed, drops rows whose source left the
input, refuses an output holding another input's rows (unless --overwrite), and every stage-1/2 rejected
answer is kept with its reason in the `rejected` file and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import chunk_row
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.teacher import make_generator
from mga.distill.label.labeling import label_pairs, label_rewrites, rejected_path

from tests.fake_openai import Reply

PARAMS = GenerationParams(temperature=0.0, max_tokens=128)
PAIRS = json.dumps({"pairs": [{"genre": f"genre {i}", "audience": f"audience {i}"} for i in range(2)]})


def reply(body):
    user = body["messages"][-1]["content"]
    if '"pairs"' in user:
        return Reply(content=PAIRS)
    return Reply(content="A rewrite: " + user.rsplit(">\n", 2)[-2].split("\n</", 1)[0][:80])


def cfg(url: str) -> TeacherConfig:
    return TeacherConfig(base_url=url, model="teacher-x", concurrency=2, timeout_s=5, max_attempts=2,
                         backoff_base_s=0.01, api_key_env="MGA_TEST_NO_KEY")


def chunks(path: Path, texts: dict[str, str]) -> Path:
    return write_rows(path, [chunk_row(docid, 0, text) for docid, text in texts.items()])


def docs_in(server) -> list[str]:
    return [body["messages"][-1]["content"] for body in server.requests]


def test_changed_text_redoes_only_its_rows_and_gone_rows_are_dropped(fake_openai, tmp_path):
    server = fake_openai(reply)
    texts = {"a": "Alpha text about owls.", "b": "Beta text about bees.", "c": "Gamma text about cats."}
    inp, out, rewrites = chunks(tmp_path / "chunks.jsonl", texts), tmp_path / "pairs.jsonl", tmp_path / "rw.jsonl"
    cache = tmp_path / "cache.sqlite"
    label_pairs(inp, out, make_generator(cfg(server.url), cache_path=cache), params=PARAMS, num_pairs=2)
    label_rewrites(out, rewrites, make_generator(cfg(server.url), cache_path=cache), params=PARAMS)
    assert len(server.requests) == 3 + 6
    server.requests.clear()

    texts["b"] = "Beta text about bees, now with honey."  # same id, new text
    del texts["c"]  # gone from the input
    chunks(inp, texts)
    rows = read_rows(label_pairs(inp, out, make_generator(cfg(server.url), cache_path=cache), params=PARAMS, num_pairs=2))
    assert [r["meta"]["docid"] for r in rows] == ["a", "b"]
    assert rows[1]["meta"]["raw_text"] == texts["b"], "the new text replaces the old row"
    assert len(server.requests) == 1 and "honey" in docs_in(server)[0]
    server.requests.clear()
    rw = read_rows(label_rewrites(out, rewrites, make_generator(cfg(server.url), cache_path=cache), params=PARAMS))
    assert {r["meta"]["docid"] for r in rw} == {"a", "b"} and len(rw) == 4
    assert len(server.requests) == 2 and all("honey" in d for d in docs_in(server))
    assert all(r["digest"] and r["source_digest"] for r in rw)

    server.requests.clear()  # other generation parameters: every row is redone (answers differ), none refused
    hotter = GenerationParams(temperature=0.5, max_tokens=128)
    label_pairs(inp, out, make_generator(cfg(server.url), cache_path=cache), params=hotter, num_pairs=2)
    assert len(server.requests) == 2


def test_another_input_into_the_same_output_is_refused_unless_overwrite(fake_openai, tmp_path):
    server = fake_openai(reply)
    out = tmp_path / "pairs.jsonl"
    label_pairs(chunks(tmp_path / "one.jsonl", {"a": "First corpus text."}), out,
                make_generator(cfg(server.url)), params=PARAMS, num_pairs=2)
    before = out.read_bytes()
    other = chunks(tmp_path / "two.jsonl", {"a": "A different corpus, same ids.", "z": "More."})
    with pytest.raises(MgaError, match="holds 1 rows of another input.*--overwrite"):
        label_pairs(other, out, make_generator(cfg(server.url)), params=PARAMS, num_pairs=2)
    assert out.read_bytes() == before
    rows = read_rows(label_pairs(other, out, make_generator(cfg(server.url)), params=PARAMS, num_pairs=2, overwrite=True))
    assert [r["meta"]["raw_text"] for r in rows] == ["A different corpus, same ids.", "More."]


REWRITE_FAULTS = {
    "json": ['{"rewrite": "x"}', "A proper rewrite about owls."],
    "verdict": ['{"analysis": "keeps the points", "score": 4}', "Analysis first.\n\nScore: 5", "Owls, retold."],
    "copy": ["COPY", "COPY", "COPY"],
    "boiler": ["Sure! Here is the rewritten text:", "Owls, rewritten for children."],
    "echo": ["ECHO", "Owls again."],
}


def test_stage2_answer_checks_reject_reask_and_keep_the_rejected(fake_openai, tmp_path):
    texts = {name: f"Document {name}: owls hunt at night and see well in the dark." for name in REWRITE_FAULTS}
    queues = {name: list(answers) for name, answers in REWRITE_FAULTS.items()}

    def respond(body):
        user = body["messages"][-1]["content"]
        if '"pairs"' in user:
            return Reply(content=json.dumps({"pairs": [{"genre": "story", "audience": "kids"}]}))
        name = next(n for n in REWRITE_FAULTS if f"Document {n}:" in user)
        answer = queues[name].pop(0)
        if answer == "COPY":
            answer = texts[name]
        if answer == "ECHO":
            answer = user
        return Reply(content=answer)

    server = fake_openai(respond)
    accounting = Accounting()
    inp = chunks(tmp_path / "chunks.jsonl", texts)
    pairs = label_pairs(inp, tmp_path / "pairs.jsonl", make_generator(cfg(server.url)), params=PARAMS, num_pairs=1)
    out = tmp_path / "rewrites.parquet"
    gen = make_generator(cfg(server.url), accounting=accounting, stage="label-rewrite")
    rows = {r["meta"]["docid"]: r for r in read_rows(label_rewrites(pairs, out, gen, params=PARAMS, max_attempts=3))}
    assert rows["json"]["status"] == "ok" and rows["json"]["content_split"] == "A proper rewrite about owls."
    assert rows["verdict"]["status"] == "ok" and rows["verdict"]["attempts"] == 3
    assert rows["boiler"]["status"] == "ok" and rows["echo"]["status"] == "ok"
    assert rows["copy"]["status"] == "rejected" and rows["copy"]["content_split"] == ""
    assert "copy of the document" in rows["copy"]["reason"] and rows["copy"]["attempts"] == 3
    rejected = read_rows(rejected_path(out))
    reasons = {(r["meta"]["docid"], r["reason"].split(",")[0]) for r in rejected}
    assert ("json", "the answer is JSON") in reasons
    assert ("verdict", "the answer is a judge-style verdict (a score)") in reasons
    assert ("boiler", "only boilerplate (1 line(s)") in reasons and ("echo", "the answer repeats the prompt") in reasons
    assert len(rejected) == 1 + 2 + 3 + 1 + 1 and all(r["text"] is not None for r in rejected)
    assert accounting.stage("label-rewrite").invalid == len(rejected)
    sent = len(server.requests)
    read_rows(label_rewrites(pairs, out, make_generator(cfg(server.url)), params=PARAMS, max_attempts=3))
    assert len(server.requests) == sent and len(read_rows(rejected_path(out))) == len(rejected)


def test_stage1_rejected_answers_are_kept_with_their_reason(fake_openai, tmp_path):
    answers = ["not json at all", json.dumps({"pairs": [{"genre": "g"}]}), PAIRS]
    server = fake_openai(lambda body: Reply(content=answers.pop(0)))
    out = tmp_path / "pairs.jsonl"
    (row,) = read_rows(label_pairs(chunks(tmp_path / "c.jsonl", {"a": "Text."}), out, make_generator(cfg(server.url)),
                                   params=PARAMS, num_pairs=2))
    assert row["status"] == "ok" and row["attempts"] == 3 and len(row["rejected"]) == 2
    rejected = read_rows(rejected_path(out))
    assert [r["attempt"] for r in rejected] == [1, 2] and rejected[0]["text"] == "not json at all"
    assert all(r["reason"] and r["key"] == "a#0" for r in rejected)


def test_judge_verdicts_are_redone_when_the_rewrite_changed(fake_openai, tmp_path):
    from mga.judge.llm_judge import judge_rows

    server = fake_openai(lambda body: Reply('{"analysis": "same points", "score": 4}'))
    rows = [{"meta": {"docid": d, "chunk_id": 0, "raw_text": f"Original {d}.", "genre": "g", "audience": "a",
                      "pair_id": 0}, "content_split": f"Rewrite {d}.", "variant": "base", "status": "ok"} for d in "abc"]
    inp, out = tmp_path / "rw.jsonl", tmp_path / "judged.jsonl"
    judge_rows(write_rows(inp, rows), out, make_generator(cfg(server.url)))
    assert len(server.requests) == 3
    rows[1]["content_split"] = "Rewrite b, edited."
    judge_rows(write_rows(inp, rows[:2]), out, make_generator(cfg(server.url)))
    assert len(server.requests) == 4 and "edited" in docs_in(server)[-1]
    judged = read_rows(out)
    assert [r["content_split"] for r in judged] == ["Rewrite a.", "Rewrite b, edited."]  # c left the input
    assert all(r["judge"]["digest"] for r in judged)
