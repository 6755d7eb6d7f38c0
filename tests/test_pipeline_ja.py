"""The Japanese quickstart (recipes/quickstart-ja.yaml) through its language-bound stages on a subset:
reference labels, heuristic judge with the ja bands, ja boilerplate and keyword filters, SFT data in the ja
prompts, a tiny student whose tokenizer learned Japanese, its answers judged (judge controls off, as the recipe
says why; tests/test_languages.py measures the heuristic judge's controls on Japanese). Quantization and the report are
language-blind and covered by the English quickstart (tests/test_pipeline.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.schema import is_control
from mga.judge.reference import default_reference_path

ROOT = Path(__file__).resolve().parents[1]
MGA = str(Path(sys.executable).with_name("mga"))
pytestmark = pytest.mark.slow


def test_japanese_quickstart_stages_on_a_subset(tmp_path):
    subset = write_rows(tmp_path / "ja-subset.jsonl", read_rows(default_reference_path("ja"))[:5])
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [MGA, "run", "recipes/quickstart-ja.yaml", "--set", f"run_dir={run_dir}", "--set", f"label.reference={subset}",
         "--set", "loop.max_rounds=1", "--set", "train.num_train_epochs=1", "--set", "report.embed=false",
         "--until", "judge-slm"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    judged = read_rows(run_dir / "judged" / "teacher.base.jsonl")
    assert not any(is_control(r) for r in judged)  # the recipe turns the controls off (see its comment)
    assert len(judged) >= 15 and len(judged) % 5 == 0  # the teacher's rewrites of every document not held out
    assert {r["judge"]["backend"] for r in judged} == {"heuristic"}
    assert all("ja bands" in r["judge"]["model"] for r in judged)
    scores = {r["meta"]["pair_id"]: r["judge"]["score"] for r in judged if r["meta"]["docid"] == judged[0]["meta"]["docid"]}
    assert scores[0] > scores[4]  # the faithful FAQ answer above the unrelated horoscope
    kept = read_rows(run_dir / "filtered" / "teacher.kept.jsonl")
    assert 0 < len(kept) < len(judged)
    sft = [json.loads(line) for line in (run_dir / "models" / "round-1" / "rewrite" / "data" / "train.jsonl").open()]
    assert sft and all("ジャンル：" in row["messages"][1]["content"] for row in sft)
    student = run_dir / "students" / "tiny-qwen2-xs-ja"
    assert (student / "config.json").exists()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student)
    text = "パッケージは実行中のシステムであっても適切にアップグレードされます。"
    assert len(tokenizer(text)["input_ids"]) < len(text.encode("utf-8")) / 2  # merges Japanese, not raw bytes
    answered = read_rows(run_dir / "slm" / "round-1" / "judged.eval.jsonl")
    assert answered and {r["judge"]["backend"] for r in answered} == {"heuristic"}
    assert {r["meta"]["docid"] for r in answered} <= {d["docid"] for d in read_rows(subset)}
