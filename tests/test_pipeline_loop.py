"""`mga run` with a live teacher and a scripted stand-in student: the loop runs three rounds that train on
strictly more examples each time, from pool documents never answered twice; every model of Table 1 and every
line of Table 2 is judged on the same eval items (tiny models cannot improve, so a script plays the SLMs)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from mga.distill.core.config import default_corpus_path
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import is_control, item_key
from mga.distill.generate.protocol import Completion, Result
from mga.distill.pipeline.pipeline import Pipeline, run_pipeline
from mga.distill.pipeline.recipe import validate_recipe

from tests.fake_openai import ECHO_TOLERANT_FILTER
from tests.test_pipeline_teacher import PAIRS, live_teacher

pytestmark = pytest.mark.slow


def _document(prompt: str) -> str:
    found = re.search(r"<(document-[0-9a-f]+)>\n(.*?)\n</\1>", prompt, re.S)
    return found.group(2) if found else ""


class StandInStudent:
    """Answers like a half-trained SLM: valid pairs, and a good rewrite for even pair ids only (the fenced
    document with a closing line, as the live teacher writes it)."""

    model_name = model_id = "stand-in"

    def run(self, requests, *, validate=None, max_attempts=1, description=""):
        for request in requests:
            user = request.messages[-1]["content"]
            if "content-creation" in request.messages[0]["content"]:
                text = json.dumps(PAIRS)
            else:
                good = int(request.key.split("#")[2]) % 2 == 0  # a bare copy would be rejected as no rewrite
                text = f"{_document(user)}\nIn short: that is the whole document." if good else "Unrelated words."
            completion = Completion(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1)
            parsed, error = validate(completion) if validate else (None, None)
            yield Result(request, completion, error=error, parsed=parsed)


@pytest.fixture
def corpus(tmp_path):
    rows = [r for r in read_rows(default_corpus_path()) if len(r["text"].split()) < 150][:8]
    return write_rows(tmp_path / "corpus.jsonl", rows)


def test_three_rounds_accumulate_and_tables_share_items(tmp_path, corpus, fake_openai, monkeypatch):
    server = fake_openai(live_teacher(), api_key="sk-test")  # the judge scores by overlap with the original
    monkeypatch.setenv("MGA_TEST_KEY", "sk-test")
    monkeypatch.setattr(Pipeline, "slm", lambda self, checkpoint, backend=None: StandInStudent)
    config = validate_recipe({
        "name": "loop", "run_dir": str(tmp_path / "run"), "corpus": {"path": str(corpus)},
        "teacher": {"base_url": server.url, "model": "fake-teacher", "api_key_env": "MGA_TEST_KEY", "timeout_s": 30,
                    "rewrite": {"temperature": 0.0, "max_tokens": 16}, "pairs": {"temperature": 0.0, "max_tokens": 16}},
        "label": {"variants": ["base", "strict"]},
        "judge": {"backend": "llm"}, "filter": ECHO_TOLERANT_FILTER,
        "train": {"student": "tiny:qwen2:xs", "num_train_epochs": 1, "max_steps": 1, "max_length": 1024,
                  "eval_fraction": 0.0, "save_strategy": "no", "report_to": "none"},
        "loop": {"max_rounds": 3, "target_gap": 1.0, "heldout_fraction": 0.25, "pool_fraction": 0.25, "pool_per_round": 1},
        "quantize": {"schemes": []},
        "report": {"embed": False},
    })
    run_dir = run_pipeline(config)

    loop = json.loads((run_dir / "rounds.json").read_text())
    assert loop["rounds"][0]["round"] == 0 and loop["rounds"][0]["examples_added"] == {"pairs": 0, "rewrite": 0}
    rounds = loop["rounds"][1:]  # round 0 is the untrained student; the trained rounds follow
    assert len(rounds) == 3 and loop["stop_reason"] == "max rounds reached (3)"
    sft = {r: {stage: len(read_rows(run_dir / "sft" / f"round-{r}" / f"{stage}.rows.jsonl")) for stage in ("pairs", "rewrite")}
           for r in (1, 2, 3)}
    for stage in ("pairs", "rewrite"):
        assert sft[1][stage] < sft[2][stage] < sft[3][stage], sft  # augmentation adds examples every round
        for r in (1, 2, 3):
            x = rounds[r - 1]["sft_examples"][stage]
            assert x["teacher"] + x["slm"] == sft[r][stage] and (x["slm"] > 0) == (r > 1)
        assert sft[2][stage] - sft[1][stage] == rounds[0]["examples_added"][stage]
    split = json.loads((run_dir / "split.json").read_text())
    answered = [{row["meta"]["docid"] for row in read_rows(run_dir / "slm" / f"round-{r}" / "rewrites.pool.jsonl")}
                for r in (1, 2)]
    assert answered[0] and answered[1] and not answered[0] & answered[1]  # pool documents never answered twice
    assert answered[0] | answered[1] <= set(split["pool"])
    assert not (run_dir / "slm" / "round-3" / "rewrites.pool.jsonl").exists()  # the last round does not augment
    assert rounds[0]["gap"] > 1.0 and rounds[0]["gap_ci95"] is not None and rounds[0]["pairs_valid_rate"] == 100.0

    report = json.loads((run_dir / "report" / "report.json").read_text())
    lines = {**report["models"], **report["variants"]}
    assert {"SLM round 1", "SLM round 3", "teacher · base", "teacher · strict", "SLM · base", "SLM · strict"} <= set(lines)
    assert len({line["total"] for line in lines.values()}) == 1, {k: v["total"] for k, v in lines.items()}
    judged = [run_dir / "judged" / "teacher.base.jsonl", run_dir / "judged" / "teacher.strict.jsonl",
              run_dir / "slm" / "round-1" / "judged.eval.jsonl", run_dir / "slm" / "variant-strict" / "judged.eval.jsonl"]
    items = lambda rows: Counter(item_key(row) for row in rows if not is_control(row))  # noqa: E731
    keys = items(row for row in read_rows(judged[0]) if row["meta"]["docid"] in split["eval"])
    assert keys and all(items(read_rows(path)) == keys for path in judged[2:])
    assert report["equal_item_sets"] is True and report["models"]["SLM round 1"]["diff_ci95"] is not None
    md = (run_dir / "report" / "report.md").read_text()
    assert "**Stopped:** max rounds reached (3)." in md and "## Judge health" in md
    assert "trained under one regime" in md and "95% CI" in md
