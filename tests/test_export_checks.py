"""Export checks as served: the linter (template, eos/pad, stops, GPTQ fields), honest row naming, task checks.

The fixture is a tiny model trained on short chat rows in the pairs model's shape (a passage -> the reference
set's JSON pairs), so that it answers with JSON and stops at <|im_end|>: valid-pairs shares and greedy agreement
then mean something.
"""

from __future__ import annotations

import json
import shutil

import pytest
from mga.distill.core.errors import MgaError
from mga.judge.pairs_check import parse_pairs

from tests.tiny_lm import pairs_chat_rows, pairs_run


def pairs_check(text: str) -> str | None:
    return parse_pairs(text)[1]


@pytest.fixture(scope="module")
def pairs_model(tmp_path_factory):
    """run/model (trained), run/data/{train,eval}.jsonl, run/train_config.json saying stage pairs."""
    return pairs_run(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def gptq(pairs_model):
    from mga.quantize.export import quantize_checkpoint

    texts = [json.dumps(r["messages"]) for r in pairs_chat_rows()][:16]
    return quantize_checkpoint(pairs_model, pairs_model.parent / "gptq-w4", "gptq-w4", group_size=32,
                               calibration=texts, num_samples=16, max_length=128)


def test_linter_passes_a_clean_gptq_export_and_names_each_problem(pairs_model, gptq, tmp_path):
    from mga.quantize.export_lint import end_of_turn_id, lint_export
    from transformers import AutoTokenizer

    assert lint_export(pairs_model, gptq) == []
    tokenizer = AutoTokenizer.from_pretrained(pairs_model)
    assert tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)) == "<|im_end|>"

    broken = shutil.copytree(gptq, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    config["quantization_config"] |= {"checkpoint_format": "gptq_v2", "bits": 5}
    config["pad_token_id"] = 0
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "generation_config.json").write_text(json.dumps({"eos_token_id": 0}))
    (broken / "chat_template.jinja").write_text((broken / "chat_template.jinja").read_text().replace("<|im_start|>", "<|im_start|> "))
    problems = "\n".join(lint_export(pairs_model, broken))
    for expected in ("chat template renders differently", "config.json pad_token_id 0", "does not include the "
                     "end-of-turn token '<|im_end|>'", "checkpoint_format 'gptq_v2'", "GPTQ bits 5"):
        assert expected in problems, problems


def test_export_with_a_bad_generation_config_is_refused(pairs_model, tmp_path):
    """The linter runs inside quantize_checkpoint: an export that would not stop is not published."""
    from mga.quantize.export import quantize_checkpoint

    source = shutil.copytree(pairs_model, tmp_path / "src")
    (source / "generation_config.json").write_text(json.dumps({"eos_token_id": 0, "pad_token_id": 3}))
    texts = [json.dumps(r["messages"]) for r in pairs_chat_rows()][:16]
    with pytest.raises(MgaError, match="export check failed(.|\n)*end-of-turn token"):
        quantize_checkpoint(source, tmp_path / "out", "gptq-w8", group_size=32, calibration=texts, num_samples=16,
                            max_length=128)
    assert not (tmp_path / "out").exists()


def test_rows_are_named_honestly(pairs_model, tmp_path):
    from mga.quantize.evaluate import eval_rows

    rows, label, source = eval_rows(pairs_model)
    assert source.name == "eval.jsonl" and label.startswith("held-out SFT rows, not trained on") and rows
    lone = shutil.copytree(pairs_model, tmp_path / "run" / "model")
    shutil.copytree(pairs_model.parent / "data", tmp_path / "run" / "data")
    (tmp_path / "run" / "data" / "eval.jsonl").write_text("")
    rows, label, source = eval_rows(lone)
    assert source.name == "train.jsonl" and "the model was trained on them" in label
    rows, label, _ = eval_rows(lone, tmp_path / "run" / "data" / "train.jsonl")
    assert f"{len(rows)} of {len(rows)} are in the training data" in label


def test_agreement_counts_identical_outputs_and_token_overlap():
    from mga.quantize.evaluate import agreement

    assert agreement([[1, 2, 3], [4, 5]], [[1, 2, 3], [4, 6, 7]]) == {"identical": 0.5, "token_overlap": round((1 + 1 / 3) / 2, 4)}
    with pytest.raises(MgaError):
        agreement([[1]], [])


def test_eval_reports_task_checks_in_compare_json_and_section(pairs_model, gptq):
    from mga.quantize.evaluate import compare_section, evaluate_export

    result = evaluate_export(pairs_model, gptq, pairs_check=pairs_check, max_rows=6, max_new_tokens=160)
    task = result["task"]
    assert task["stage"] == "pairs" and task["prompts"] == 6
    assert task["valid_5_pairs"]["full"] >= 0.5, task  # the fixture learned the JSON shape
    assert task["valid_5_pairs"]["quantized"] >= task["valid_5_pairs"]["full"] - 0.34, task
    assert task["stopped_at_end_of_turn"]["full"] >= 0.5
    assert 0.0 <= task["agreement"]["identical"] <= task["agreement"]["token_overlap"] <= 1.0
    assert result["rows_used"].startswith("held-out SFT rows") and result["heldout"].endswith("eval.jsonl")
    assert json.loads((gptq / "compare.json").read_text())["task"] == task
    outputs = [json.loads(line) for line in (gptq / "task_outputs.jsonl").read_text().splitlines()]
    assert len(outputs) == 6 and sum(o["identical"] for o in outputs) / 6 == pytest.approx(task["agreement"]["identical"], abs=1e-4)
    section = compare_section(gptq / "compare.json")
    assert "valid JSON, 5 distinct pairs" in section and "held-out SFT rows, not trained on" in section
    assert "Held-out rows" not in section


def test_rewrite_stage_is_judged_full_vs_quantized(pairs_model, gptq, tmp_path):
    """With a judge (the offline heuristic here), Rate(>=3) of both models on the same prompts lands in the result."""
    from functools import partial

    from mga.judge.config import JudgeConfig
    from mga.judge.judging import judged_rate
    from mga.quantize.evaluate import task_checks

    rows = [{**r, "meta": {"docid": r["docid"], "chunk_id": 0, "pair_id": 0, "raw_text": r["messages"][0]["content"],
                           "genre": "Lecture", "audience": "students"}} for r in pairs_chat_rows()[:3]]
    rate = partial(judged_rate, work_dir=tmp_path / "judged", cfg=JudgeConfig(backend="heuristic"))
    result = task_checks(pairs_model, gptq, rows, tmp_path, rows_used="given", stage="rewrite", judge_rate=rate,
                         max_new_tokens=24)
    assert set(result["rate_ge3"]) == {"full", "quantized"}
    assert all(0.0 <= v <= 100.0 for v in result["rate_ge3"].values())
    judged = [json.loads(line) for line in (tmp_path / "judged" / "judged.quantized.jsonl").read_text().splitlines()]
    answers = [row for row in judged if not row.get("control")]  # the judge's own controls ride along
    assert len(answers) == 3 and all("judge" in row for row in answers)
