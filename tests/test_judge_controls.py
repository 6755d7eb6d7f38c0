"""The judge's controls: built from a seeded sample, judged with the real items, a verdict on the judge,
and never part of a table, a filter's output or SFT data."""

from __future__ import annotations

import json
import re

import pytest
from mga.distill.cli.main import app
from mga.distill.core.config import TeacherConfig, default_corpus_path
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import chunk_row, is_control, rewrite_key
from mga.distill.pipeline.pipeline import run_pipeline
from mga.distill.pipeline.recipe import validate_recipe
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

from tests.fake_openai import ECHO_TOLERANT_FILTER
from tests.judges import blind_judge, constant_judge, judged_texts, overlap_judge
from tests.test_pipeline_teacher import live_teacher


def documents(n: int = 24) -> list[dict]:
    """Rewrite rows for `n` real documents of the bundled sample corpus (the rewrite: the first half)."""
    rows = []
    for corpus_row in read_rows(default_corpus_path())[:n]:
        text = corpus_row["text"]
        chunk = chunk_row(corpus_row["id"], 0, text, corpus_row.get("source", ""))
        rows.append({**chunk, "meta": {**chunk["meta"], "genre": "g", "audience": "a", "pair_id": 0},
                     "content_split": text[: len(text) // 2], "variant": "base", "status": "ok", "reason": None})
    return rows


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


def test_a_judge_blind_to_the_texts_fails_and_mga_judge_refuses_it(fake_openai, tmp_path):
    server = fake_openai(blind_judge)
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


REFERENCE_REWRITES = reference_rewrite_rows(default_reference_path("en"))
# the reference documents the controls sample (judge.controls, 20 by default, or all if fewer)
SAMPLED = min(JudgeConfig().controls, len({r["meta"]["docid"] for r in REFERENCE_REWRITES}))


@pytest.fixture(scope="module")
def heuristic_reference(tmp_path_factory):
    """The bundled reference set's rewrites judged by the heuristic judge (controls on by default)."""
    folder = tmp_path_factory.mktemp("controls")
    src = write_rows(folder / "rewrites.jsonl", REFERENCE_REWRITES)
    return judge_file(src, folder / "judged.jsonl", JudgeConfig(backend="heuristic"), language="en")


def test_the_heuristic_judge_passes_its_controls_on_the_reference_set(heuristic_reference):
    verdict = control_verdict(read_rows(heuristic_reference))
    assert verdict["passed"], verdict["failures"]
    assert verdict["documents"] == SAMPLED and verdict["negative"] == 2 * SAMPLED
    assert verdict["kinds"]["positive"]["counts"][5] == SAMPLED  # the original as its own rewrite: top score


def test_controls_enter_no_table_no_filter_output_and_no_sft_data(heuristic_reference, tmp_path):
    rows = read_rows(heuristic_reference)
    real = [r for r in rows if not is_control(r)]
    controls = [r for r in rows if is_control(r)]
    n = len(REFERENCE_REWRITES)
    assert len(real) == n and len(controls) == 3 * SAMPLED
    assert max(r["judge"]["score"] for r in controls) == 5  # a positive control would pass the score filter
    assert summarize(rows)["total"] == n and summarize(rows, include_controls=True)["total"] == n + 3 * SAMPLED

    stats = filter_file(heuristic_reference, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl")
    kept = read_rows(tmp_path / "kept.jsonl")
    assert kept and not any(is_control(r) for r in kept) and stats["judge_control"] == 3 * SAMPLED

    write_rows(tmp_path / "sft-rows.jsonl", kept + controls)
    train, evals = build_sft_datasets(tmp_path / "sft-rows.jsonl", "rewrite", tmp_path / "sft", eval_fraction=0.2)
    examples = read_rows(train) + read_rows(evals)
    assert len(examples) == len(kept) and not any("control" in e["key"] for e in examples)

    md = write_report({"teacher": rows, "copy": rows}, tmp_path / "report", table2=True)
    report = json.loads(md.with_name("report.json").read_text())
    assert report["models"]["teacher"]["total"] == n and all(v["total"] == n for v in report["variants"].values())
    assert report["judge_controls"]["teacher"]["passed"] is True
    text = md.read_text()
    assert text.index("## Judge health: controls") < text.index("## Table 1")
    assert f"| teacher | {SAMPLED} | 100.0% of {SAMPLED} |" in text
    html = md.with_name("report.html").read_text()
    assert html.index("Judge health: controls") < html.index("Table 1: judge scores per model")


def test_a_report_on_a_judge_that_failed_says_so_first(fake_openai, tmp_path):
    server = fake_openai(lambda request: blind_judge(request, salt="1"))
    src = write_rows(tmp_path / "rewrites.jsonl", documents(12))
    out = judge_file(src, tmp_path / "judged.jsonl", JudgeConfig(endpoint=endpoint(server)))
    md = write_report({"teacher": out}, tmp_path / "report").read_text()
    assert "The judge FAILED its controls in: teacher" in md.split("## Table 1")[0]
    assert "| teacher | 12 |" in md and "FAILED:" in md
    off = judge_file(src, tmp_path / "judged-off.jsonl", JudgeConfig(endpoint=endpoint(server), controls=0))
    assert control_verdict(read_rows(off)) is None
    assert "controls were off" in write_report({"teacher": off}, tmp_path / "report-off").read_text()


def run_recipe(tmp_path, corpus, server, **loop) -> dict:
    return {
        "name": "controls", "run_dir": str(tmp_path / "run"), "corpus": {"path": str(corpus)},
        "teacher": {"base_url": server.url, "model": "fake-teacher", "api_key_env": "MGA_TEST_NO_KEY", "timeout_s": 30,
                    "rewrite": {"temperature": 0.0, "max_tokens": 16}, "pairs": {"temperature": 0.0, "max_tokens": 16}},
        "judge": {"backend": "llm"}, "filter": ECHO_TOLERANT_FILTER,
        "train": {"student": "tiny:qwen2:xs", "num_train_epochs": 1, "max_length": 2048, "eval_fraction": 0.0,
                  "learning_rate": 1e-3, "save_strategy": "no", "report_to": "none"},
        "loop": {"max_rounds": 3, "target_gap": 100.0, "heldout_fraction": 0.2, "pool_fraction": 0.2, **loop},
        "quantize": {"schemes": []}, "report": {"embed": False},
    }


def test_mga_run_with_a_blind_judge_refuses_to_stop_on_the_gap(tmp_path, short_corpus, fake_openai):
    """target_gap 100: any gap stops the loop, unless the judge fails its controls."""
    server = fake_openai(live_teacher(blind_judge))
    config = validate_recipe(run_recipe(tmp_path, short_corpus, server))
    with pytest.raises(MgaError, match="judge failed its controls in judge@teacher.base"):
        run_pipeline(config)
    run_dir = tmp_path / "run"
    loop = json.loads((run_dir / "rounds.json").read_text())
    assert loop["rounds"] == [] and loop["stop_reason"] == "judge failed its controls"  # no round on a meaningless filter
    assert not (run_dir / "models").exists()
    md = (run_dir / "report" / "report.md").read_text()
    head = md.split("## Table 1")[0]
    assert "The judge FAILED its controls in: judge@teacher.base" in head and "stopped before round 1" in head
    # 4 judged documents (one held out for the pool has no teacher rewrites), topped up to the corpus's 5
    assert "| judge@teacher.base | 5 |" in head and "FAILED:" in head
    assert "trained for minutes" not in md  # no student was trained: the report must not say one was
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["judge_controls"]["judge@teacher.base"]["passed"] is False
    assert list(report["models"]) == ["teacher (fake-teacher)"]


def test_the_loop_stops_on_a_judge_that_fails_in_an_slm_round_whatever_the_gap(tmp_path, short_corpus, fake_openai):
    """The judge discriminates except on the pool documents: the teacher's labels pass, the first SLM round's
    pool judging fails, and the loop stops there with that reason although the gap is within target."""
    run_dir = tmp_path / "run"

    def pool_texts() -> set[str]:
        pool = set(json.loads((run_dir / "split.json").read_text())["pool"])
        return {r["meta"]["raw_text"] for r in read_rows(run_dir / "corpus" / "chunks.jsonl") if r["meta"]["docid"] in pool}

    def judge(request):
        original, _ = judged_texts(request)
        return constant_judge(request) if original in pool_texts() else overlap_judge(request)

    server = fake_openai(live_teacher(judge))
    recipe = run_recipe(tmp_path, short_corpus, server)
    recipe["judge"]["controls"] = 1  # the pool stage's controls from its own document only (no corpus top-up)
    config = validate_recipe(recipe)
    with pytest.raises(MgaError, match=r"judge failed its controls in judge-slm@pool\.round-1"):
        run_pipeline(config)
    rounds = json.loads((run_dir / "rounds.json").read_text())["rounds"]
    assert [x["round"] for x in rounds] == [0, 1]  # round 0: the untrained student, then the one trained round
    assert rounds[1]["gap"] <= 100.0 and rounds[1]["stop"] == "judge failed its controls"
    report = json.loads((run_dir / "report" / "report.json").read_text())
    verdicts = report["judge_controls"]
    assert verdicts["judge@teacher.base"]["passed"] and verdicts["judge-slm@eval.round-1"]["passed"]
    assert not verdicts["judge-slm@pool.round-1"]["passed"]
    assert "SLM round 1" in report["models"] and not (run_dir / "models" / "round-2").exists()
