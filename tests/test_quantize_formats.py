"""Every format side by side: `mga quantize --scheme ... --eval` writes one table (full model first) with size,
tokens/s on each format's own engine, perplexity, task rate with its Wilson interval and greedy agreement, and
names the smallest format whose task rate lies inside the full model's interval (the quality gate)."""

from __future__ import annotations

import json
import shutil

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_rows
from mga.quantize.evaluate import formats_markdown, formats_section, quality_gate, task_rate

from tests.tiny_lm import pairs_chat_rows

SCHEMES = ["gptq-w4", "gguf-q8_0", "gguf-q4_k_m"]  # both engines; gptq-w8 and w8a8 export as gptq-w4 does


def _format(name: str, size: int, part: int | None, total: int = 20) -> dict:
    task = None if part is None else task_rate({"prompts": total, "valid_5_pairs": {"full": part / total}}, "full")
    return {"format": name, "bytes": size, "task": task}


def test_gate_names_the_smallest_format_inside_the_full_models_interval():
    full = _format("full", 1000, 10)  # 10/20: Wilson 95% interval 29.9-70.1%
    assert full["task"]["ci95"] == [29.93, 70.07] and full["task"]["rate"] == 50.0
    formats = [_format("q8", 500, 9), _format("q4", 250, 7), _format("q2", 125, 5)]  # 45%, 35%, 25% (outside)
    gate = quality_gate(full, formats)
    assert gate["format"] == "q4" and gate["bytes"] == 250 and gate["candidates"] == ["q4", "q8"]
    assert gate["interval"] == [29.93, 70.07]


def test_gate_says_none_when_no_rate_lies_inside_or_the_full_model_has_none():
    full = _format("full", 1000, 18)  # 90%: interval 69.9-97.2%
    gate = quality_gate(full, [_format("q8", 500, 13), _format("q4", 250, 2), _format("judged?", 100, None)])
    assert gate["format"] is None and gate["candidates"] == [] and "no format" in gate["reason"]
    gate = quality_gate(_format("full", 1000, None), [_format("q8", 500, 13)])
    assert gate["format"] is None and gate["interval"] is None and "--judge" in gate["reason"]


def test_gate_breaks_a_tie_on_size_by_the_higher_rate_then_by_name_whatever_the_order():
    full = _format("full", 1000, 10)
    tied = [_format("b-lower", 250, 8), _format("a-higher", 250, 11), _format("big", 900, 10)]
    assert quality_gate(full, tied)["format"] == "a-higher"
    assert quality_gate(full, tied[::-1])["format"] == "a-higher"
    same = [_format("zeta", 250, 10), _format("alpha", 250, 10)]
    assert quality_gate(full, same)["format"] == quality_gate(full, same[::-1])["format"] == "alpha"
    edge = [_format("on-the-edge", 100, 6)]  # 30%: inside [29.93, 70.07]
    assert quality_gate(full, edge)["format"] == "on-the-edge"


@pytest.fixture(scope="module")
def pairs_checkpoint(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny model with SFT rows beside it as `mga train` leaves them (stage pairs), and held-out rows."""
    run = tmp_path_factory.mktemp("formats")
    model = shutil.copytree(tiny_model_dir, run / "model")
    rows = pairs_chat_rows()
    write_rows(run / "data" / "train.jsonl", rows[4:])
    (run / "train_config.json").write_text(json.dumps({"stage": "pairs"}))
    return model, write_rows(run / "heldout.jsonl", rows[:4])


def test_quantize_eval_tabulates_every_scheme_with_the_full_model_first(pairs_checkpoint):
    from mga.distill.cli.main import app
    from typer.testing import CliRunner

    model, heldout = pairs_checkpoint
    result = CliRunner().invoke(app, ["quantize", str(model), *[f"--scheme={s}" for s in SCHEMES], "--eval",
                                      "--heldout", str(heldout), "--eval-rows", "3", "--eval-tokens", "12",
                                      "--samples", "16", "--max-length", "128", "--group-size", "32"])
    assert result.exit_code == 0, result.output
    table = json.loads((model.parent / "model-formats.json").read_text())
    rows = {row["format"]: row for row in table["formats"]}
    assert [row["format"] for row in table["formats"]] == ["full", *SCHEMES]
    assert {rows[s]["backend"] for s in SCHEMES} == {"transformers", "llama.cpp"}
    assert all(rows[s]["backend"] == "llama.cpp" for s in SCHEMES if s.startswith("gguf-"))
    for row in table["formats"]:
        assert row["tokens_per_s"] > 0 and row["perplexity"] > 1 and row["task"]["total"] == 3
        assert row["task"]["ci95"][0] <= row["task"]["rate"] <= row["task"]["ci95"][1]
        assert 0 <= row["token_overlap"] <= 1
    size = {name: row["bytes"] for name, row in rows.items()}
    assert size["gguf-q4_k_m"] < size["gguf-q8_0"] < size["full"] and size["gptq-w4"] < size["full"] / 2
    inside = [r for r in table["formats"][1:] if table["gate"]["interval"][0] <= r["task"]["rate"] <= table["gate"]["interval"][1]]
    assert table["gate"]["format"] == min(inside, key=lambda r: (r["bytes"], -r["task"]["rate"], r["format"]))["format"]
    assert "Quality gate:" in result.output and "cannot show" in result.output
    assert formats_markdown(table).count("\n| ") >= len(SCHEMES) + 1
    compares = [model.parent / f"model-{scheme}" / "compare.json" for scheme in SCHEMES]
    for scheme, compare in zip(SCHEMES, compares):  # each export keeps its own comparison
        assert json.loads(compare.read_text())["quantized"]["tokens_per_s"] == rows[scheme]["tokens_per_s"]
    assert formats_section(compares) == formats_markdown(table)  # what `mga run`'s report shows


def test_output_with_several_schemes_is_refused(pairs_checkpoint, tmp_path):
    from mga.distill.cli.main import app
    from typer.testing import CliRunner

    model, _ = pairs_checkpoint
    result = CliRunner().invoke(app, ["quantize", str(model), "--scheme", "gptq-w4", "--scheme", "gguf-q8_0",
                                      "-o", str(tmp_path / "out")])
    assert isinstance(result.exception, MgaError) and "--output names one folder" in str(result.exception)
