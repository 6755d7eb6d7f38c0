"""Build a tiny causal LM and its tokenizer locally, with no download: for tests and the offline quickstart.

The tokenizer is a byte-level BPE trained on the bundled sample corpus, with ChatML special tokens,
eos = `<|im_end|>` (the end-of-turn token the chat template emits after every assistant turn) and a
dedicated pad token. The chat template wraps the assistant turn in `{% generation %}` tags so that TRL's
assistant-only loss and `return_assistant_tokens_mask` see exactly the assistant tokens (answer + eos).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from mga.distill.core.errors import MgaError
from mga.distill.train.tokenizer_check import CHATML_TEMPLATE

Arch = Literal["qwen2", "llama"]
Size = Literal["xs", "s"]

IM_START, IM_END, PAD, EOT = "<|im_start|>", "<|im_end|>", "<|pad|>", "<|endoftext|>"
CHAT_TEMPLATE = CHATML_TEMPLATE

# Widths are multiples of 128 so GPTQ's default group size applies to every linear layer.
SIZES = {
    "xs": dict(vocab=4096, hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384),
    "s": dict(vocab=8192, hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768),
}


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE over `texts`, wrapped as a transformers fast tokenizer with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT, IM_START, IM_END, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[EOT, IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
        padding_side="right",
    )


def _corpus_texts(corpus: Path | list[Path] | None) -> list[str]:
    from mga.distill.core.config import default_corpus_path
    from mga.distill.core.io import iter_rows

    paths = [Path(p) for p in corpus] if isinstance(corpus, list) else [Path(corpus) if corpus else default_corpus_path()]
    texts = [row["text"] for path in paths for row in iter_rows(path) if isinstance(row.get("text"), str)]
    if not texts:
        raise MgaError(f"{', '.join(map(str, paths))}: no 'text' rows to train a tokenizer on")
    return texts


def build_tiny_model(
    out: str | Path,
    arch: Arch = "qwen2",
    size: Size = "xs",
    seed: int = 0,
    corpus: Path | list[Path] | None = None,
) -> Path:
    """Write a randomly initialised `arch` model and its tokenizer to `out`; deterministic given `seed`."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        GenerationConfig,
        LlamaConfig,
        Qwen2Config,
    )

    if arch not in ("qwen2", "llama"):
        raise MgaError(f"unknown arch '{arch}': choose qwen2 or llama")
    if size not in SIZES:
        raise MgaError(f"unknown size '{size}': choose {' or '.join(SIZES)}")
    out = Path(out)
    spec = SIZES[size]
    tokenizer = train_tokenizer(_corpus_texts(corpus), spec["vocab"])
    eos, pad = tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(PAD)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden"],
        intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=None,
    )
    config = Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "mga_tiny_model.json").write_text(json.dumps({"arch": arch, "size": size, "seed": seed}) + "\n")
    return out


def resolve_student(spec: str, cache_dir: str | Path, language: str = "en") -> str:
    """`tiny:ARCH:SIZE` builds (once) a tiny model under `cache_dir`, a named base model (`smollm2-135m`,
    `mga.distill.train.base_model`) is converted there once; anything else is a path or hub id.

    For a language other than English the tokenizer also learns the language's sample corpus, so that its
    prompts do not fall apart into single bytes (a Japanese prompt would not fit the quickstart's lengths).
    """
    from mga.distill.train.base_model import BASE_MODELS, build_base_model

    if spec in BASE_MODELS:
        return str(build_base_model(spec, Path(cache_dir) / spec))
    if not spec.startswith("tiny:"):
        return spec
    parts = spec.split(":")
    arch = parts[1] if len(parts) > 1 and parts[1] else "qwen2"
    size = parts[2] if len(parts) > 2 and parts[2] else "xs"
    from mga.distill.core.config import default_corpus_path

    corpora = list(dict.fromkeys([default_corpus_path(), default_corpus_path(language)]))
    target = Path(cache_dir) / (f"tiny-{arch}-{size}" if len(corpora) == 1 else f"tiny-{arch}-{size}-{language}")
    if not (target / "config.json").exists():
        build_tiny_model(target, arch=arch, size=size, corpus=corpora)  # type: ignore[arg-type]
    return str(target)
