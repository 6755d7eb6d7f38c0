"""`mga tiny-model`: loadable, ChatML with eos = end of turn, exact assistant mask, deterministic."""

from __future__ import annotations

import hashlib

from mga.distill.train.tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer

MESSAGES = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Rewrite: the with statement wraps a block."},
    {"role": "assistant", "content": "A with block calls __enter__ and __exit__."},
    {"role": "user", "content": "Again, shorter."},
    {"role": "assistant", "content": "with: enter, run, exit."},
]


def test_loads_with_auto_classes_and_eos_is_end_of_turn(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert tok.eos_token == "<|im_end|>"
    assert tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    assert 1_000_000 < model.num_parameters() < 3_000_000


def test_assistant_mask_covers_exactly_the_assistant_turns(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok.apply_chat_template(MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked = [i for i, m in zip(ids, mask) if m]
    expected = tok("A with block calls __enter__ and __exit__.<|im_end|>with: enter, run, exit.<|im_end|>")["input_ids"]
    assert masked == expected
    # every masked span ends with the end-of-turn token, so EOS is learned
    ends = [ids[i] for i in range(len(ids)) if mask[i] and (i + 1 == len(ids) or not mask[i + 1])]
    assert ends == [tok.eos_token_id, tok.eos_token_id]


def test_generation_prompt(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_deterministic_given_seed(tmp_path):
    a = build_tiny_model(tmp_path / "a", arch="llama", seed=3)
    b = build_tiny_model(tmp_path / "b", arch="llama", seed=3)
    c = build_tiny_model(tmp_path / "c", arch="llama", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.model_type == "llama"
