"""`mga run` with a live teacher: labeling, the LLM judge and the loop go through the loopback OpenAI server."""

from __future__ import annotations

import json
import re

from mga.distill.pipeline.pipeline import run_pipeline
from mga.distill.pipeline.recipe import validate_recipe

from tests.fake_openai import ECHO_TOLERANT_FILTER, Reply
from tests.judges import is_judge_request, overlap_judge

PAIRS = {"pairs": [{"genre": f"Genre {i}: a text of kind {i}. It has tone {i}.",
                    "audience": f"Readers of group {i}. They are {i * 10} years old."} for i in range(5)]}


def live_teacher(judge=overlap_judge):
    """A teacher endpoint: fixed pairs, the document with a closing line as its rewrite (a bare copy is
    rejected), and `judge` for judge prompts
    (by default one that discriminates, so it passes its controls)."""

    def respond(request):
        user = request["messages"][-1]["content"]
        if is_judge_request(request):
            return judge(request)
        if "content-creation" in request["messages"][0]["content"]:
            return Reply(content=json.dumps(PAIRS))
        document = re.search(r"<(document-[0-9a-f]+)>\n(.*?)\n</\1>", user, re.S)
        return Reply(content=f"{document.group(2)}\nIn short: that is the whole document." if document else "")

    return respond


teacher = live_teacher()


def test_run_with_teacher_endpoint_stops_when_within_target_gap(tmp_path, short_corpus, fake_openai, monkeypatch):
    server = fake_openai(teacher, api_key="sk-test-secret-123")
    monkeypatch.setenv("MGA_TEST_KEY", "sk-test-secret-123")
    config = validate_recipe({
        "name": "live", "run_dir": str(tmp_path / "run"),
        "corpus": {"path": str(short_corpus)},
        "teacher": {"base_url": server.url, "model": "fake-teacher", "api_key_env": "MGA_TEST_KEY",
                    "timeout_s": 30, "rewrite": {"temperature": 0.0, "max_tokens": 16},
                    "pairs": {"temperature": 0.0, "max_tokens": 16}},
        "label": {"variants": ["base", "strict"]},
        "judge": {"backend": "llm"}, "filter": ECHO_TOLERANT_FILTER,
        "train": {"student": "tiny:qwen2:xs", "num_train_epochs": 1, "max_length": 2048, "eval_fraction": 0.0,
                  "learning_rate": 1e-3, "save_strategy": "no", "report_to": "none"},
        "loop": {"max_rounds": 3, "target_gap": 100.0, "target_pairs_valid": 0.0, "heldout_fraction": 0.2,
                 "pool_fraction": 0.2},
        "quantize": {"schemes": []},
        "report": {"embed": False},
    })
    run_dir = run_pipeline(config)
    sent = len(server.requests)
    # 5 documents: 5 pairs calls, 5 rewrites for each train/eval document, and the judge on each rewrite
    assert sum("content-creation" in r["messages"][0]["content"] for r in server.requests) == 5
    loop = json.loads((run_dir / "rounds.json").read_text())
    rounds = loop["rounds"]
    assert [x["round"] for x in rounds] == [0, 1]  # round 0 (untrained), then within target_gap: no second round
    assert rounds[1]["teacher_rate"] == 100.0 and rounds[0]["eval_items"] == rounds[1]["eval_items"]
    assert loop["stop_reason"].startswith("target reached") and rounds[1]["teacher_rate_ci95"][1] == 100.0
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert "LLM judge (fake-teacher" in json.dumps(report)
    report_md = (run_dir / "report" / "report.md").read_text()
    for line in ("teacher · base", "teacher · strict", "SLM · base", "SLM · strict"):  # Table 2: prompt variants
        assert f"| {line} |" in report_md
    assert (run_dir / "models" / "variant-strict" / "rewrite" / "mga_checkpoint.txt").exists()
    accounting = json.loads((run_dir / "accounting.json").read_text())["stages"]
    assert accounting["label-pairs"]["requests"] == 5
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".yaml", ".md", ".html", ".sqlite"}:
            assert b"sk-test-secret-123" not in path.read_bytes(), path
    run_pipeline(config)
    assert len(server.requests) == sent  # a rerun sends no request
