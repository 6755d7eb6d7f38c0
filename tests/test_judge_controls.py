"""The judge's controls: built from a seeded sample, judged with the real items, a verdict on the judge,
and never part of a table, a filter's output or SFT data."""

from __future__ import annotations

import json
import random
import re
import threading

import pytest
from mga.distill.cli.main import app
from mga.distill.core.config import TeacherConfig, default_corpus_path
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import chunk_row, is_control, rewrite_key
from mga.distill.train.sft_data import build_sft_datasets
from mga.judge.config import JudgeConfig
from mga.judge.controls import control_rows, control_verdict, destroy
from mga.judge.filters import filter_file
from mga.judge.judging import judge_file
from mga.judge.keywords import keyword_coverage, stop_words
from mga.judge.reference import default_reference_path, reference_rewrite_rows
from mga.judge.report import write_report
from mga.judge.scores import summarize
from typer.testing import CliRunner

from tests.fake_openai import Reply

_WORDS = re.compile(r"[a-z]{4,}")


def documents(n: int = 24) -> list[dict]:
    """Rewrite rows for `n` real documents of the bundled sample corpus (the rewrite: the first half)."""
    rows = []
    for corpus_row in read_rows(default_corpus_path())[:n]:
        text = corpus_row["text"]
        chunk = chunk_row(corpus_row["id"], 0, text, corpus_row.get("source", ""))
        rows.append({**chunk, "meta": {**chunk["meta"], "genre": "g", "audience": "a", "pair_id": 0},
                     "content_split": text[: len(text) // 2], "variant": "base", "status": "ok", "reason": None})
    return rows


def _block(user: str, name: str) -> str:
    match = re.search(rf"<{name}[^>]*>\n?(.*?)\n?</{name}", user, re.S)
    assert match, f"no {name} block in the judge prompt"
    return match.group(1)


def overlap_judge(request) -> Reply:
    """A judge with a fixed rule: the share of the original's words (4+ letters) found in the rewrite."""
    user = request["messages"][-1]["content"]
    original, rewrite = _block(user, "original_document"), _block(user, "rewritten_document")
    wanted = set(_WORDS.findall(original.lower()))
    share = len(wanted & set(_WORDS.findall(rewrite.lower()))) / max(1, len(wanted))
    score = 1 + sum(share >= t for t in (0.4, 0.55, 0.7, 0.85))
    return Reply(json.dumps({"analysis": f"{share:.2f} of the original's words kept", "score": score}))


def random_judge(seed: int = 0):
    """A judge whose scores do not depend on the texts."""
    rng, lock = random.Random(seed), threading.Lock()

    def respond(request) -> Reply:
        with lock:
            return Reply(json.dumps({"analysis": "looks fine", "score": rng.randint(1, 5)}))

    return respond


def endpoint(server) -> TeacherConfig:
    return TeacherConfig(model="fake-judge", base_url=server.url, api_key_env="MGA_TEST_NO_KEY", concurrency=4,
                         max_attempts=2)


def test_controls_come_from_a_seeded_sample_and_destroy_the_information():
    rows = documents(30)
    controls = control_rows(rows, 20, seed=3)
    kinds = [c["control"]["kind"] for c in controls]
    assert kinds.count("positive") == kinds.count("other_document") == kinds.count("destroyed") == 20
    assert control_rows(rows, 20, seed=3) == controls  # seeded
    assert {rewrite_key(c) for c in control_rows(rows, 20, seed=4)} != {rewrite_key(c) for c in controls}
    assert len(control_rows(rows, 100)) == 3 * 30 and control_rows(rows, 0) == []  # all if fewer; 0 = off
    assert all(is_control(c) and c["meta"]["pair_id"] == f"control:{c['control']['kind']}" for c in controls)
    assert len({rewrite_key(c) for c in controls} | {rewrite_key(r) for r in rows}) == len(controls) + len(rows)
    for c in controls:
        original, text = c["meta"]["raw_text"], c["content_split"]
        if c["control"]["kind"] == "positive":
            assert text == original
            continue
        assert not c["control"]["donor"].startswith(c["meta"]["docid"] + "#")
        if c["control"]["kind"] == "destroyed":  # same layout, none of the original's keywords
            assert keyword_coverage(original, text) <= 0.1 and text.count("\n") == original.count("\n")
    ratios = [len(c["content_split"]) / len(c["meta"]["raw_text"]) for c in controls if c["control"]["kind"] == "other_document"]
    assert sum(0.5 <= r <= 2.0 for r in ratios) >= 18  # similar length where the corpus has one
    text = "In 1991 Guido van Rossum released Python 0.9 at CWI, see https://www.cwi.nl for more."
    destroyed = destroy(text, "Bees gather nectar from clover fields while farmers harvest wheat and barley.", seed=1)
    assert "1991" not in destroyed and "0.9" not in destroyed and len(re.findall(r"\d", destroyed)) == 6
    assert not {"guido", "rossum", "python", "released", "cwi"} & set(re.findall(r"[a-z]+", destroyed.lower()))
    assert destroyed.startswith("In ") and " at " in destroyed and ", see " in destroyed and "://" in destroyed
    kept = [w for w in re.findall(r"[a-z]+", destroyed.lower()) if len(w) >= 3 and w not in stop_words()]
    assert kept and set(kept) <= {"bees", "gather", "nectar", "clover", "fields", "farmers", "harvest", "wheat", "barley"}


def test_a_judge_that_answers_random_scores_fails_and_mga_judge_refuses_it(fake_openai, tmp_path):
    server = fake_openai(random_judge())
    src = write_rows(tmp_path / "rewrites.jsonl", documents(24))
    out = tmp_path / "judged.jsonl"
    args = ["judge", "-i", str(src), "-o", str(out), "--set", f"teacher.base_url={server.url}",
            "--set", "teacher.model=fake-judge", "--set", "teacher.api_key_env=MGA_TEST_NO_KEY"]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, MgaError)  # `mga` prints it as one error: line, exit 2
    assert "failed its controls" in str(refused.exception) and "--allow-weak-judge" in str(refused.exception)
    rows = read_rows(out)  # the controls were judged with the real items, by the same endpoint
    assert len(server.requests) == len(rows) == 24 + 3 * 20
    verdict = control_verdict(rows)
    assert not verdict["passed"] and abs(verdict["separation"]) < 2.0
    allowed = CliRunner().invoke(app, [*args, "--allow-weak-judge"])
    assert allowed.exit_code == 0, allowed.output
    assert "FAILED" in allowed.output and len(server.requests) == 24 + 3 * 20  # answered from the same cache


def test_a_judge_that_scores_by_text_overlap_passes(fake_openai, tmp_path):
    server = fake_openai(overlap_judge)
    src = write_rows(tmp_path / "rewrites.jsonl", documents(24))
    out = judge_file(src, tmp_path / "judged.jsonl", JudgeConfig(endpoint=endpoint(server)), seed=7)
    verdict = control_verdict(read_rows(out))
    assert verdict["passed"], verdict["failures"]
    assert verdict["documents"] == 20 and verdict["positive_ge3"] == 100.0 and verdict["negative_le2"] == 100.0
    assert verdict["separation"] >= 3.0


@pytest.fixture(scope="module")
def heuristic_reference(tmp_path_factory):
    """The bundled reference set's rewrites judged by the heuristic judge (controls on by default)."""
    folder = tmp_path_factory.mktemp("controls")
    src = write_rows(folder / "rewrites.jsonl", reference_rewrite_rows(default_reference_path("en")))
    return judge_file(src, folder / "judged.jsonl", JudgeConfig(backend="heuristic"), language="en")


def test_the_heuristic_judge_passes_its_controls_on_the_reference_set(heuristic_reference):
    verdict = control_verdict(read_rows(heuristic_reference))
    assert verdict["passed"], verdict["failures"]
    assert verdict["documents"] == 13 and verdict["negative"] == 26
    assert verdict["kinds"]["positive"]["counts"][5] == 13  # the original as its own rewrite: top score


def test_controls_enter_no_table_no_filter_output_and_no_sft_data(heuristic_reference, tmp_path):
    rows = read_rows(heuristic_reference)
    real = [r for r in rows if not is_control(r)]
    controls = [r for r in rows if is_control(r)]
    assert len(real) == 65 and len(controls) == 39
    assert max(r["judge"]["score"] for r in controls) == 5  # a positive control would pass the score filter
    assert summarize(rows)["total"] == 65 and summarize(rows, include_controls=True)["total"] == 104

    stats = filter_file(heuristic_reference, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl")
    kept = read_rows(tmp_path / "kept.jsonl")
    assert kept and not any(is_control(r) for r in kept) and stats["judge_control"] == 39

    write_rows(tmp_path / "sft-rows.jsonl", kept + controls)
    train, evals = build_sft_datasets(tmp_path / "sft-rows.jsonl", "rewrite", tmp_path / "sft", eval_fraction=0.2)
    examples = read_rows(train) + read_rows(evals)
    assert len(examples) == len(kept) and not any("control" in e["key"] for e in examples)

    md = write_report({"teacher": rows, "copy": rows}, tmp_path / "report", table2=True)
    report = json.loads(md.with_name("report.json").read_text())
    assert report["models"]["teacher"]["total"] == 65 and all(v["total"] == 65 for v in report["variants"].values())
    assert report["judge_controls"]["teacher"]["passed"] is True
    text = md.read_text()
    assert text.index("## Judge health: controls") < text.index("## Table 1")
    assert "| teacher | 13 | 100.0% of 13 |" in text
    html = md.with_name("report.html").read_text()
    assert html.index("Judge health: controls") < html.index("Table 1: judge scores per model")


def test_a_report_on_a_judge_that_failed_says_so_first(fake_openai, tmp_path):
    server = fake_openai(random_judge(1))
    src = write_rows(tmp_path / "rewrites.jsonl", documents(12))
    out = judge_file(src, tmp_path / "judged.jsonl", JudgeConfig(endpoint=endpoint(server)))
    md = write_report({"teacher": out}, tmp_path / "report").read_text()
    assert "The judge FAILED its controls in: teacher" in md.split("## Table 1")[0]
    assert "| teacher | 12 |" in md and "FAILED:" in md
    off = judge_file(src, tmp_path / "judged-off.jsonl", JudgeConfig(endpoint=endpoint(server), controls=0))
    assert control_verdict(read_rows(off)) is None
    assert "controls were off" in write_report({"teacher": off}, tmp_path / "report-off").read_text()
