"""GGUF export (`--scheme gguf-q8_0|gguf-q4_k_m`) verified in llama.cpp through llama-cpp-python.

A tiny model trained on short chat rows (it answers with JSON and stops at <|im_end|>) is converted, quantized
by llama.cpp, loaded by llama.cpp and compared with the full model greedily on its held-out prompts.
Measured on this fixture (8 held-out prompts, 4 pairs + 4 continuations, up to 128 new tokens): q8_0 Qwen2
6 of 8 answers identical, token overlap 0.865 (the two that differ are degenerate, repetitive continuations
where logits nearly tie; every JSON answer is identical), the same end-of-turn stops as the full model.
"""

from __future__ import annotations

import json

import pytest
from mga.distill.core.errors import MgaError

from tests.tiny_lm import pairs_run

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[test]')")
gguf = pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[test]')")

CHATML_TEMPLATE = ('{{ range .Messages }}{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n'
                   '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
                   '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n'
                   '{{ end }}{{ end }}<|im_start|>assistant\n')


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return pairs_run(tmp_path_factory.mktemp("gguf-qwen2"))


def _fields(path):
    reader = gguf.GGUFReader(str(path))

    def value(key):
        field = reader.fields[key]
        return field.contents() if hasattr(field, "contents") else field.parts[field.data[0]].tolist()

    return reader, value


def test_q8_0_matches_the_full_model_in_llama_cpp(qwen2, tmp_path):
    from mga.distill.cli.main import app
    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    out = tmp_path / "q8"
    result = CliRunner().invoke(app, ["quantize", str(qwen2), "--scheme", "gguf-q8_0", "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "llama.cpp vs full model" in result.output
    info = json.loads((out / "mga_quantize.json").read_text())
    check = info["verification"]
    assert info["file"] == "model-q8_0.gguf" and (out / "model-q8_0.gguf").stat().st_size == info["bytes"]
    assert check["rows_used"].startswith("held-out SFT rows") and check["prompts"] == 8
    assert check["chat_template_identical"] and check["tokenizer_texts_checked"] >= 11
    assert check["agreement"]["identical"] >= 0.625, check  # q8_0: identical or near-identical (measured 0.75)
    assert check["agreement"]["token_overlap"] >= 0.75, check  # measured 0.865
    assert check["stopped_at_end_of_turn"]["full"] > 0
    assert check["stopped_at_end_of_turn"]["gguf"] == check["stopped_at_end_of_turn"]["full"]

    tokenizer = AutoTokenizer.from_pretrained(qwen2)
    reader, value = _fields(out / "model-q8_0.gguf")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert value("tokenizer.ggml.eos_token_id") == im_end and value("tokenizer.ggml.eot_token_id") == im_end
    template = value("tokenizer.chat_template")
    assert "{% generation %}" not in template and "endgeneration" not in template and "<|im_start|>" in template
    assert value("general.architecture") == "qwen2"
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["blk.0.attn_norm.weight"] == "F32"

    modelfile = (out / "Modelfile").read_text()
    assert modelfile == f'FROM ./model-q8_0.gguf\nTEMPLATE """{CHATML_TEMPLATE}"""\nPARAMETER stop "<|im_end|>"\n'

    again = CliRunner().invoke(app, ["quantize", str(qwen2), "--scheme", "gguf-q8_0", "-o", str(out)])
    assert again.exit_code == 0 and "reused" in again.output


def test_q4_k_m_loads_answers_and_stops(qwen2, tmp_path):
    from mga.quantize.export import quantize_checkpoint

    out = quantize_checkpoint(qwen2, tmp_path / "q4", "gguf-q4_k_m")
    info = json.loads((out / "mga_quantize.json").read_text())
    check = info["verification"]
    assert info["bytes"] < (qwen2 / "model.safetensors").stat().st_size / 3  # fp32 source (measured: 0.25)
    assert check["agreement"]["token_overlap"] >= 0.3, check
    assert check["stopped_at_end_of_turn"]["gguf"] > 0, check


def test_llama_architecture_q8_0(tmp_path):
    """Llama's q/k weights are permuted for llama.cpp's RoPE layout: wrong permutation = different answers."""
    from mga.quantize.gguf import export_gguf
    from mga.quantize.evaluate import eval_rows

    model = pairs_run(tmp_path / "llama", arch="llama", steps=80)
    rows, used, _ = eval_rows(model)
    check = json.loads((export_gguf(model, tmp_path / "out", "gguf-q8_0", rows=rows, rows_used=used)
                        / "mga_quantize.json").read_text())["verification"]
    assert check["agreement"]["identical"] >= 0.625 and check["agreement"]["token_overlap"] >= 0.75, check


def test_other_architectures_and_tokenizers_are_refused(qwen2, tmp_path):
    import shutil

    from mga.quantize.export import quantize_checkpoint
    from mga.quantize.gguf import _pre_tokenizer

    odd = shutil.copytree(qwen2, tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    with pytest.raises(MgaError, match="GGUF export supports Qwen2 and Llama checkpoints, not 'gpt_neox'"):
        quantize_checkpoint(odd, tmp_path / "o", "gguf-q8_0")
    with pytest.raises(MgaError, match="byte-level BPE"):
        _pre_tokenizer({"model": {"type": "Unigram"}})
    with pytest.raises(MgaError, match="pre-tokenizer is none llama.cpp knows"):
        _pre_tokenizer({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}})
    assert not (tmp_path / "o").exists()


def test_ollama_template_keeps_a_default_system_prompt():
    """A Qwen2.5-style template injects a system turn when none is given: it becomes the Modelfile's SYSTEM."""
    from mga.quantize.ollama import modelfile
    from transformers import PreTrainedTokenizerFast

    template = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
                "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")),
                                  chat_template=template)
    text = modelfile("m.gguf", tok, ["<|im_end|>"])
    assert 'SYSTEM """You are helpful."""' in text
    assert '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in text
    bad = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")),
                                  chat_template="{% for m in messages %}{{ loop.index }}:{{ m['content'] }}\n{% endfor %}")
    with pytest.raises(MgaError, match="not a plain per-turn template"):
        modelfile("m.gguf", bad, ["x"])
