"""`--dry-run` counts exactly the requests a real run then sends, stage by stage; `teacher.max_budget_usd`
stops a run before it could overspend, and the run resumes when the cap is raised."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from mga.distill.core.config import default_corpus_path
from mga.distill.core.io import read_rows, write_rows
from mga.distill.pipeline.dry_run import dry_run
from mga.distill.pipeline.pipeline import run_pipeline
from mga.distill.pipeline.recipe import validate_recipe

from tests.fake_openai import Reply
from tests.judges import is_judge_request
from tests.test_pipeline_teacher import teacher as _teacher


def teacher(request):
    """Valid pairs and verdicts; each rewrite distinct (a rewrite equal to the document would make the
    judge prompts of a document's five rewrites identical, and identical prompts are answered once)."""
    reply = _teacher(request)
    if _kind(request) == "rewrite":
        digest = hashlib.sha1(request["messages"][-1]["content"].encode()).hexdigest()[:8]
        return Reply(content=f"{reply.content} ({digest})")
    return reply


@pytest.fixture
def corpus(tmp_path):
    rows = [r for r in read_rows(default_corpus_path()) if len(r["text"].split()) < 400][:7]
    return write_rows(tmp_path / "corpus.jsonl", rows)


def _recipe(tmp_path, corpus, url, **teacher_kw):
    return validate_recipe({
        "name": "dry", "run_dir": str(tmp_path / "run"), "corpus": {"path": str(corpus), "chunk_tokens": 200},
        "teacher": {"base_url": url, "model": "fake-teacher", "api_key_env": "MGA_TEST_NO_KEY", "concurrency": 4,
                    "price_input_per_million": 1.0, "price_output_per_million": 4.0,
                    "rewrite": {"max_tokens": 64}, "pairs": {"max_tokens": 256}, **teacher_kw},
        "label": {"variants": ["base", "strict"]}, "judge": {"backend": "llm"},
        "loop": {"max_rounds": 2, "heldout_fraction": 0.2, "pool_fraction": 0.2},
        "quantize": {"schemes": []}, "report": {"embed": False},
    })


def _kind(body) -> str:
    if is_judge_request(body):
        return "judge"
    return "pairs" if "content-creation" in body["messages"][0]["content"] else "rewrite"


def test_dry_run_counts_equal_what_the_run_sends(tmp_path, corpus, fake_openai):
    server = fake_openai(teacher)
    cfg = _recipe(tmp_path, corpus, server.url)
    estimates = {e.stage: e for e in dry_run(cfg, latency_s=1.5)}
    assert not server.requests  # nothing was sent
    assert not (tmp_path / "run" / "cache.sqlite").exists()
    teacher_stages = ["label-pairs", "label-rewrites@base", "judge@teacher.base", "label-rewrites@strict",
                      "judge@teacher.strict"]
    assert all(estimates[s].requests > 0 for s in teacher_stages)
    est = estimates["label-pairs"]
    assert est.cost_bound is not None and est.cost_bound >= est.cost_expected > 0
    assert est.wall_s == pytest.approx(-(-est.requests // 4) * 1.5)
    assert any("estimated" in note for note in est.notes)

    run_pipeline(cfg, until="filter")
    stages = json.loads((tmp_path / "run" / "accounting.json").read_text())["stages"]
    assert {s: estimates[s].requests for s in teacher_stages} == {s: stages[s]["requests"] for s in teacher_stages}
    by_kind = {k: sum(_kind(b) == k for b in server.requests) for k in ("pairs", "rewrite", "judge")}
    assert by_kind == {"pairs": estimates["label-pairs"].requests,
                       "rewrite": sum(estimates[f"label-rewrites@{v}"].requests for v in ("base", "strict")),
                       "judge": sum(estimates[f"judge@teacher.{v}"].requests for v in ("base", "strict"))}

    # after the run: every teacher request is answered (cached or written), so a dry run expects none
    again = {e.stage: e for e in dry_run(cfg, latency_s=1.5)}
    assert all(again[s].requests == 0 for s in teacher_stages)
    assert again["judge-slm (up to 2 rounds)"].requests > 0  # the loop is still ahead (a bound)


def test_dry_run_excludes_cache_hits_exactly(tmp_path, corpus, fake_openai):
    """Labels removed but the cache kept: the dry run sees every request as a cache hit (same keys)."""
    server = fake_openai(teacher)
    cfg = _recipe(tmp_path, corpus, server.url)
    run_pipeline(cfg, until="label-rewrites")
    labels = tmp_path / "run" / "labels"
    for path in labels.glob("rewrites.*.jsonl"):
        path.unlink()
    estimates = {e.stage: e for e in dry_run(cfg)}
    base, strict = estimates["label-rewrites@base"], estimates["label-rewrites@strict"]
    assert (base.requests, base.cache_hits) == (0, 55)
    assert (strict.requests, strict.cache_hits) == (0, 55)  # --until labels every variant
    (labels / "pairs.jsonl").unlink()
    estimates = {e.stage: e for e in dry_run(cfg)}
    assert estimates["label-pairs"].requests == 0 and estimates["label-pairs"].cache_hits == 12


def test_label_dry_run_cli(tmp_path, corpus, fake_openai, monkeypatch, capsys):
    from mga.distill.cli.main import main

    server = fake_openai(teacher)
    args = ["mga", "label", "--stage", "pairs", "-i", str(corpus), "-o", str(tmp_path / "out" / "pairs.jsonl"),
            "--base-url", server.url, "--model", "fake-teacher", "--dry-run", "--latency", "3",
            "--set", "teacher.api_key_env=MGA_TEST_NO_KEY", "--set", "corpus.chunk_tokens=200"]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert (done.value.code or 0) == 0 and "nothing was sent" in out and "label-pairs" in out
    assert not server.requests


def test_budget_stops_the_run_and_it_resumes_when_raised(tmp_path, corpus, fake_openai, monkeypatch, capsys):
    from mga.distill.cli.main import main

    server = fake_openai(teacher)
    out = tmp_path / "out" / "pairs.jsonl"

    def label(budget: float) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [
            "mga", "label", "--stage", "pairs", "-i", str(corpus), "-o", str(out), "--base-url", server.url,
            "--model", "fake-teacher", "--concurrency", "1", "--set", "teacher.api_key_env=MGA_TEST_NO_KEY",
            "--set", "corpus.chunk_tokens=200", "--set", "teacher.price_input_per_million=1000",
            "--set", "teacher.price_output_per_million=1000", "--set", "teacher.pairs.max_tokens=100",
            "--set", f"teacher.max_budget_usd={budget}"])
        with pytest.raises(SystemExit) as done:
            main()
        captured = capsys.readouterr()
        return done.value.code or 0, captured.out + captured.err

    code, text = label(0.8)
    assert code == 2 and "max_budget_usd=$0.8000 reached" in text and "raise teacher.max_budget_usd" in text
    spent = sum(s["cost"] for s in json.loads((tmp_path / "out" / "accounting.json").read_text())["stages"].values())
    assert 0 < spent <= 0.8
    first = len(server.requests)
    assert 0 < first
    code, text = label(100.0)
    assert code == 0, text
    rows = read_rows(out)
    assert all(r["status"] == "ok" for r in rows)
    asked = [json.dumps(b["messages"]) for b in server.requests]
    assert len(asked) == len(set(asked)) == len(rows)  # nothing asked twice across the stop and the resume


def test_mga_run_refuses_another_inputs_labels_unless_overwrite(tmp_path, corpus, fake_openai, capsys):
    """Same run folder, another corpus: `mga run` says so (not a silent mix), and `--overwrite` redoes it."""
    from mga.distill.cli.main import main

    server = fake_openai(teacher)
    run_pipeline(_recipe(tmp_path, corpus, server.url), until="label-pairs")
    others = [r for r in read_rows(default_corpus_path()) if len(r["text"].split()) < 400][7:12]
    other = write_rows(tmp_path / "other.jsonl", others)
    recipe = tmp_path / "other.yaml"
    recipe.write_text(json.dumps({
        "name": "dry", "run_dir": str(tmp_path / "run"), "corpus": {"path": str(other), "chunk_tokens": 200},
        "teacher": {"base_url": server.url, "model": "fake-teacher", "api_key_env": "MGA_TEST_NO_KEY"},
        "quantize": {"schemes": []}, "report": {"embed": False}}))

    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["run", str(recipe), "--until", "label-pairs"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert refused.value.code == 2 and len(errors) == 1 and "of another input" in errors[0]
    assert "--overwrite" in errors[0]
    with pytest.raises(SystemExit) as done:
        main(["run", str(recipe), "--until", "label-pairs", "--overwrite"])
    assert done.value.code in (0, None)
    pairs = read_rows(tmp_path / "run" / "labels" / "pairs.jsonl")
    assert {r["meta"]["docid"] for r in pairs} == {r["id"] for r in others}
