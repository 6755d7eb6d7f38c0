"""The local SLM generator: batched left-padded generation equals one-by-one generation, finish reasons and
token counts are right, validation retries sample, and full, LoRA-adapter and GPTQ checkpoints all load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mga.distill.core.config import GenerationParams
from mga.distill.core.errors import MgaError
from mga.distill.generate.local import LocalGenerator
from mga.distill.generate.protocol import Request

GREEDY = GenerationParams(temperature=0.0, max_tokens=6)



def requests(params: GenerationParams = GREEDY, n: int = 5) -> list[Request]:
    # prompts of different lengths, so a batch needs padding
    return [Request(f"r{i}", [{"role": "user", "content": "tell me about cats " * (i + 1)}], params) for i in range(n)]


def answers(generator, reqs, **kwargs) -> dict:
    return {r.request.key: r for r in generator.run(reqs, **kwargs)}


def test_batched_greedy_equals_one_by_one(tiny_model_dir):
    batched = answers(LocalGenerator(str(tiny_model_dir), batch_size=4), requests())
    single = answers(LocalGenerator(str(tiny_model_dir), batch_size=1), requests())
    assert LocalGenerator(str(tiny_model_dir)).model_name == Path(tiny_model_dir).name
    assert set(batched) == {f"r{i}" for i in range(5)}
    for key, result in batched.items():
        assert result.ok and result.attempts == 1
        assert result.completion.text == single[key].completion.text
        c = result.completion
        assert c.finish_reason in ("stop", "length")
        assert c.completion_tokens == 6 if c.finish_reason == "length" else c.completion_tokens <= 6
        assert c.prompt_tokens == single[key].completion.prompt_tokens > 0
    lengths = [batched[f"r{i}"].completion.prompt_tokens for i in range(5)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


def test_seeded_sampling_is_reproducible(tiny_model_dir):
    generator = LocalGenerator(str(tiny_model_dir), batch_size=5)
    params = GenerationParams(temperature=1.0, max_tokens=8, seed=7)
    first = answers(generator, requests(params))
    second = answers(generator, requests(params))
    assert {k: r.completion.text for k, r in first.items()} == {k: r.completion.text for k, r in second.items()}


def test_rejected_answers_are_asked_again(tiny_model_dir):
    generator = LocalGenerator(str(tiny_model_dir), batch_size=3)
    seen: dict[str, int] = {}

    def reject_first(completion):
        seen[completion.text] = seen.get(completion.text, 0) + 1
        return (None, "first try rejected") if sum(seen.values()) <= 3 else (completion.text.upper(), None)

    results = answers(generator, requests(n=3), validate=reject_first, max_attempts=3)
    for result in results.values():
        assert result.ok and result.attempts == 2 and result.history == ["first try rejected"]
        assert result.parsed == result.completion.text.upper()

    results = answers(generator, requests(n=2), validate=lambda c: (None, "never good"), max_attempts=2)
    for result in results.values():
        assert not result.ok and result.error == "never good" and result.attempts == 2
        assert result.completion is not None  # the last answer is kept, so the row can say what went wrong


def test_bad_inputs_are_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(MgaError, match="not a local checkpoint"):
        LocalGenerator(str(tmp_path / "missing"))
    with pytest.raises(MgaError, match="vllm"):
        LocalGenerator(str(tiny_model_dir), backend="vllm")  # no vllm / no GPU here
    with pytest.raises(MgaError, match="unknown local backend"):
        LocalGenerator(str(tiny_model_dir), backend="tgi")


def test_lora_adapter_and_gptq_checkpoints_load(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        ids = tokenizer("tell me about cats", return_tensors="pt")["input_ids"]
        expected = peft_model(ids).logits
    adapter = LocalGenerator(str(tmp_path / "adapter"), batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(adapter.model(ids).logits, expected)
    assert all(r.ok for r in adapter.run(requests(n=2)))

    config = GPTQConfig(bits=4, group_size=128, dataset=["The cat sat on the mat. " * 20] * 8, tokenizer=tokenizer)
    quantized = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=config, dtype=torch.float16)
    quantized.save_pretrained(tmp_path / "gptq")
    tokenizer.save_pretrained(tmp_path / "gptq")
    gptq = LocalGenerator(str(tmp_path / "gptq"), batch_size=2)
    assert json.loads((tmp_path / "gptq" / "config.json").read_text())["quantization_config"]["quant_method"] == "gptq"
    assert any(hasattr(m, "qweight") for m in gptq.model.modules())  # 4-bit kernels, not nn.Linear
    results = answers(gptq, requests(n=3))
    assert all(r.ok and r.completion.completion_tokens > 0 for r in results.values())


def test_a_model_that_cannot_generate_stops_the_stage(tiny_model_dir, tmp_path):
    """Every batch raising (OOM, broken weights) is an error, never rows of 'generation failed'; isolated
    failures between good batches stay rows; a rerun of a stopped stage answers the held-back batches."""
    from mga.distill.generate.local import LocalGenerationFailed
    from mga.distill.label.labeling import label_rewrites

    generator = LocalGenerator(str(tiny_model_dir), batch_size=2, max_failed_batches=2)
    real = generator.model.generate
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        raise RuntimeError("CUDA out of memory")

    generator.model.generate = broken
    with pytest.raises(LocalGenerationFailed, match="2 batches in a row failed.*out of memory"):
        list(generator.run(requests(n=6)))
    with pytest.raises(LocalGenerationFailed, match="every batch failed"):  # one batch, fewer than the limit
        list(generator.run(requests(n=1)))

    def flaky(*args, **kwargs):  # only the longest prompt fails: one failed row among good ones
        if kwargs["input_ids"].shape[1] > 40:
            raise RuntimeError("too long")
        return real(*args, **kwargs)

    generator.model.generate = flaky
    results = answers(generator, requests(n=6))
    assert len(results) == 6 and sum(not r.ok for r in results.values()) >= 1
    assert sum(r.ok for r in results.values()) >= 3

    pairs = tmp_path / "pairs.jsonl"
    from mga.distill.core.io import read_rows, write_rows

    write_rows(pairs, [{"meta": {"docid": f"d{i}", "chunk_id": 0, "source": "", "raw_text": "cats " * 5},
                        "pairs": [{"genre": "poem", "audience": "kids"}], "status": "ok"} for i in range(4)])
    generator.model.generate = broken
    with pytest.raises(MgaError, match="failed to generate"):
        label_rewrites(pairs, tmp_path / "out.jsonl", generator, params=GREEDY)
    generator.model.generate = real
    label_rewrites(pairs, tmp_path / "out.jsonl", generator, params=GREEDY)  # the rerun answers every row
    assert [row["status"] for row in read_rows(tmp_path / "out.jsonl")].count("failed") == 0


def test_answers_are_keyed_by_the_models_bytes_not_its_folder_name(tmp_path):
    """A tool model retrained (or re-exported) into the same folder is another model: a rerun of the stage it
    answers must redo its rows, not reuse the old model's (the quickstart's quantized row once came from round
    1's export this way)."""
    import shutil

    from mga.distill.core.io import read_rows, write_rows
    from mga.distill.label.labeling import label_pairs
    from mga.distill.train.tiny_model import build_tiny_model
    from mga.distill.core.schema import chunk_row

    chunks = write_rows(tmp_path / "chunks.jsonl", [chunk_row(str(i), 0, f"Text number {i}.") for i in range(3)])
    model, out = tmp_path / "model", tmp_path / "pairs.jsonl"
    digests = []
    for seed in (0, 1):  # same name, other weights
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(build_tiny_model(tmp_path / f"built-{seed}", arch="qwen2", size="xs", seed=seed), model)
        generator = LocalGenerator(str(model))
        label_pairs(chunks, out, generator, params=GREEDY, max_validation_attempts=1)
        digests.append({row["meta"]["docid"]: row["digest"] for row in read_rows(out)})
        assert generator.model_id.startswith("model@") and generator.model_name == "model"
    assert len(digests[0]) == len(digests[1]) == 3
    assert all(digests[0][d] != digests[1][d] for d in digests[0])
