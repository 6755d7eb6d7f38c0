"""Quantized export on a tiny model trained in a fixture, so that perplexity means something.

Bounds (measured on this fixture, group size 32, 16 calibration rows: GPTQ-4 x1.0002, GPTQ-8 x0.9999,
W8A8 x1.0000 of the full model's perplexity of ~245 on held-out SFT answers): the quantized model must stay
within x1.05 of the full model for 4-bit and x1.01 for the 8-bit schemes, must differ from it (it was
quantized), and the full model must have learned something (perplexity far below the 4k vocabulary).
"""

from __future__ import annotations

import gzip
import json
import math

import pytest
import torch
from mga.distill.core.config import default_corpus_path
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows

from tests.tiny_lm import train_steps

PPL_BOUND = {"gptq-w4": 1.05, "gptq-w8": 1.01, "w8a8": 1.01}
# group size 32 costs ~0.05 of fp16 in scales and zeros over the 4/16 of the weights themselves
LINEAR_OVER_FP16 = {"gptq-w4": 0.32, "gptq-w8": 0.6, "w8a8": 0.6}
SAMPLES, MAX_LENGTH, GROUP_SIZE = 16, 128, 32


def train_tiny_lm(folder, steps: int, holdout: int = 10):
    """Pretrain the tiny model on the sample corpus (every `holdout`-th document left out), plain torch loop."""
    docs = [row["text"] for i, row in enumerate(read_rows(default_corpus_path())) if i % holdout]
    return train_steps(folder, docs, steps, one_cycle=True, max_doc_tokens=4096)


def sft_rows_from(docs: list[dict]) -> list[dict]:
    """SFT-shaped rows (`messages`, `docid`, `key`) from corpus documents: continue a passage."""
    rows = []
    for doc in docs:
        for start in range(0, min(len(doc["text"]), 2400), 600):
            piece = doc["text"][start : start + 600]
            if len(piece) >= 300:
                rows.append({"messages": [{"role": "user", "content": "Continue:\n" + piece[:250]},
                                          {"role": "assistant", "content": piece[250:]}],
                             "docid": doc["id"], "key": f"{doc['id']}:{start}"})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """run/checkpoint (trained tiny qwen2 xs) with run/data/train.jsonl and run/data/eval.jsonl beside it."""
    from mga.distill.train.tiny_model import build_tiny_model

    run = tmp_path_factory.mktemp("quant")
    checkpoint = train_tiny_lm(build_tiny_model(run / "checkpoint", arch="qwen2", size="xs", seed=0), steps=200)
    docs = read_rows(default_corpus_path())
    write_rows(run / "data" / "train.jsonl", sft_rows_from([d for i, d in enumerate(docs) if i % 10]))
    write_rows(run / "data" / "eval.jsonl", sft_rows_from([d for i, d in enumerate(docs) if i % 10 == 0])[:24])
    return checkpoint


@pytest.fixture(scope="module")
def calibration(trained):
    from mga.quantize.calibration import build_calibration
    from transformers import AutoTokenizer

    return build_calibration(AutoTokenizer.from_pretrained(trained), sft_rows=trained.parent / "data" / "train.jsonl",
                             corpus_path=default_corpus_path(), num_samples=SAMPLES, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def quantized(trained, calibration):
    """Each scheme's output folder, quantized once per module."""
    from mga.quantize.export import quantize_checkpoint

    texts, record = calibration
    cache = {}

    def get(scheme: str):
        if scheme not in cache:
            cache[scheme] = quantize_checkpoint(
                trained, trained.parent / f"q-{scheme}", scheme, group_size=GROUP_SIZE, calibration=texts,
                calibration_record=record, num_samples=SAMPLES, max_length=MAX_LENGTH)
        return cache[scheme]

    return get


def test_calibration_mixes_sft_and_corpus_and_records_rows(trained, calibration):
    from mga.quantize.calibration import build_calibration, text_hash
    from transformers import AutoTokenizer

    texts, record = calibration
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert len(texts) == len(record) == SAMPLES
    assert sum(r["source"] == "corpus" for r in record) == round(SAMPLES * 0.25)
    sft = [t for t, r in zip(texts, record) if r["source"] == "sft"]
    assert sft and all("<|im_start|>assistant\n" in t for t in sft)  # rendered through the chat template
    assert all(text_hash(t) == r["sha256"] for t, r in zip(texts, record))
    assert all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) <= MAX_LENGTH + 2 for t in texts)
    assert any(r["tokens"] == MAX_LENGTH for r in record)  # long documents were cut
    again, _ = build_calibration(tokenizer, sft_rows=trained.parent / "data" / "train.jsonl",
                                 corpus_path=default_corpus_path(), num_samples=SAMPLES, max_length=MAX_LENGTH)
    other, _ = build_calibration(tokenizer, sft_rows=trained.parent / "data" / "train.jsonl",
                                 corpus_path=default_corpus_path(), num_samples=SAMPLES, max_length=MAX_LENGTH, seed=1)
    assert again == texts and other != texts
    few, few_record = build_calibration(tokenizer, sft_rows=read_rows(trained.parent / "data" / "train.jsonl")[:3],
                                        corpus_path=default_corpus_path(), num_samples=SAMPLES, max_length=MAX_LENGTH)
    assert len(few) == SAMPLES and sum(r["source"] == "sft" for r in few_record) == 3  # corpus fills the gap


@pytest.mark.parametrize("scheme", ["gptq-w4", "gptq-w8", "w8a8"])
def test_scheme_loads_generates_and_keeps_perplexity(scheme, trained, quantized, tmp_path):
    from mga.quantize.evaluate import compare
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = quantized(scheme)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (trained / name).read_bytes(), name
    info = json.loads((out / "mga_quantize.json").read_text())
    assert info["scheme"] == scheme and info["calibration"]["rows"] == SAMPLES
    assert {r["source"] for r in info["calibration"]["used"]} == {"sft", "corpus"}

    config = json.loads((out / "config.json").read_text())["quantization_config"]
    if scheme.startswith("gptq"):
        assert config["quant_method"] == "gptq"
        assert config["bits"] == int(scheme[-1]) and config["group_size"] == GROUP_SIZE
    else:
        assert config["quant_method"] == "compressed-tensors"
        group = next(iter(config["config_groups"].values()))
        assert group["weights"]["num_bits"] == 8 and group["input_activations"]["num_bits"] == 8

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Continue:\nThe assert statement"}],
                                           tokenize=False, add_generation_prompt=True)
    x = tokenizer(prompt, return_tensors="pt")
    generated = model.generate(**x, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > x["input_ids"].shape[1]

    result = compare(trained, out, trained.parent / "data" / "eval.jsonl", tmp_path / "compare.json",
                     max_rows=16, gen_tokens=4, gen_prompts=1)
    assert json.loads((tmp_path / "compare.json").read_text()) == result
    full, quant = result["full"], result["quantized"]
    assert full["perplexity"] < 400, "the fixture model did not learn: perplexity is meaningless"
    assert quant["perplexity"] <= PPL_BOUND[scheme] * full["perplexity"], result["ratios"]
    assert quant["perplexity"] != full["perplexity"]
    assert quant["linear_bytes_over_fp16"] <= LINEAR_OVER_FP16[scheme], quant
    assert full["linear_bytes_over_fp16"] == pytest.approx(2.0, rel=0.01)  # the fixture is fp32
    assert quant["tokens_per_s"] > 0 and quant["load_s"] > 0 and result["scored_tokens"] > 100


def test_finished_output_is_reused(trained, quantized, calibration):
    from mga.quantize.export import quantize_checkpoint

    out = quantized("gptq-w4")
    stamp = (out / "mga_quantize.json").stat().st_mtime_ns
    texts, record = calibration
    again = quantize_checkpoint(trained, out, "gptq-w4", group_size=GROUP_SIZE, calibration=texts,
                                calibration_record=record, num_samples=SAMPLES, max_length=MAX_LENGTH)
    assert again == out and (out / "mga_quantize.json").stat().st_mtime_ns == stamp


def test_lora_adapter_alone_is_refused(tmp_path):
    from mga.quantize.export import quantize_checkpoint

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(MgaError, match="merge first: mga train --merge"):
        quantize_checkpoint(adapter, tmp_path / "out", "gptq-w4", calibration=["x"] * 32)


def test_too_little_calibration_data(trained, tmp_path):
    from mga.quantize.export import quantize_checkpoint

    with pytest.raises(MgaError, match="too little calibration data: 3 non-empty texts"):
        quantize_checkpoint(trained, tmp_path / "out", "gptq-w4", calibration=["some text"] * 3 + ["", "  "])
    assert not (tmp_path / "out").exists()


def test_clear_errors_for_scheme_library_device_and_group(trained, tmp_path, monkeypatch):
    import importlib.util

    from mga.quantize import export

    texts = ["text"] * 16
    with pytest.raises(MgaError, match="unknown quantization scheme 'awq'"):
        export.quantize_checkpoint(trained, tmp_path / "o", "awq", calibration=texts)
    with pytest.raises(MgaError, match="needs a CUDA GPU"):
        export.quantize_checkpoint(trained, tmp_path / "o", "gptq-w4", calibration=texts, device="cuda")
    with pytest.raises(MgaError, match="group size 100 does not divide"):
        export.quantize_checkpoint(trained, tmp_path / "o", "gptq-w4", group_size=100, calibration=texts)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({**json.loads((trained / "config.json").read_text()),
                                                 "model_type": "not-a-real-arch"}))
    (odd / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    with pytest.raises(MgaError, match="architecture 'not-a-real-arch' is not supported by GPTQModel"):
        export.quantize_checkpoint(odd, tmp_path / "o", "gptq-w4", calibration=texts)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llmcompressor" else real(name, *a))
    with pytest.raises(MgaError, match="pip install .*llmcompressor"):
        export.quantize_checkpoint(trained, tmp_path / "o", "w8a8", calibration=texts)


def test_cli_quantize_with_eval(trained, tmp_path):
    from mga.distill.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path / "cli-w4"
    result = CliRunner().invoke(app, ["quantize", str(trained), "--scheme", "gptq-w4", "--group-size", "32",
                                      "--samples", "12", "--max-length", "64", "--output", str(out), "--eval",
                                      "--eval-rows", "4", "--eval-tokens", "16"])
    assert result.exit_code == 0, (result.output, result.exception)
    info = json.loads((out / "mga_quantize.json").read_text())
    assert info["calibration"]["rows"] == 12  # default calibration: ../data/train.jsonl + corpus
    assert {r["source"] for r in info["calibration"]["used"]} == {"sft", "corpus"}
    compared = json.loads((out / "compare.json").read_text())
    assert compared["heldout"].endswith("eval.jsonl") and compared["ratios"]["perplexity"] > 0
    assert compared["rows_used"].startswith("held-out SFT rows, not trained on") and compared["task"]["prompts"] == 4
    assert compared["task"]["stage"] == "rewrite" and "valid_5_pairs" not in compared["task"]

    missing = CliRunner().invoke(app, ["quantize", str(trained), "--calibration", str(tmp_path / "nope.jsonl")])
    assert isinstance(missing.exception, MgaError) and "nope.jsonl" in str(missing.exception)


def test_rtn_baseline_rounds_onto_the_grid(trained):
    from mga.quantize.rtn import rtn_quantize_
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(trained)
    errors = {}
    for bits in (4, 8):
        model = AutoModelForCausalLM.from_pretrained(trained)
        assert rtn_quantize_(model, bits, GROUP_SIZE) == 28  # 7 linear layers x 4 blocks, LM head untouched
        weight = model.model.layers[0].mlp.down_proj.weight
        assert all(len(torch.unique(g)) <= 2**bits for g in weight.reshape(-1, GROUP_SIZE)[:64])
        assert torch.equal(model.lm_head.weight, full.lm_head.weight)
        errors[bits] = (weight - full.model.layers[0].mlp.down_proj.weight).abs().mean().item()
    assert 0 < errors[8] < errors[4] / 8
    assert math.isfinite(errors[4])


def test_calibration_reads_a_folder_corpus_by_streaming(tmp_path, tiny_model_dir):
    """A corpus given as a folder of shards calibrates like any other: a seeded sample across every file."""
    from mga.quantize.calibration import build_calibration
    from transformers import AutoTokenizer

    docs = read_rows(default_corpus_path())
    write_rows(tmp_path / "corpus" / "part-0.jsonl", docs[::2])
    plain = write_rows(tmp_path / "part-1.jsonl", docs[1::2])
    (tmp_path / "corpus" / "part-1.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts, record = build_calibration(tokenizer, sft_rows=None, corpus_path=tmp_path / "corpus", num_samples=12,
                                      max_length=64, seed=3)
    again, _ = build_calibration(tokenizer, sft_rows=None, corpus_path=tmp_path / "corpus", num_samples=12,
                                 max_length=64, seed=3)
    ids = {r["id"] for r in record}
    assert len(texts) == 12 and texts == again and {r["source"] for r in record} == {"corpus"}
    assert ids & {str(d["id"]) for d in docs[::2]} and ids & {str(d["id"]) for d in docs[1::2]}
