"""W8A8 (int8 weights and per-token int8 activations) through llm-compressor: SmoothQuant, then GPTQ.

SmoothQuant moves activation outliers into the weights (per-channel scales folded into the preceding norm),
so that 8-bit activations lose little; GPTQ then rounds the smoothed weights to int8 per output channel.
The result is a compressed-tensors checkpoint that vLLM serves with int8 GEMMs; transformers loads it too.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError

SMOOTHING_STRENGTH = 0.8  # llm-compressor's default and its W8A8 examples


@contextlib.contextmanager
def _quiet_llmcompressor():
    from loguru import logger

    logger.disable("llmcompressor")
    try:
        yield
    finally:
        logger.enable("llmcompressor")


def quantize_w8a8(
    checkpoint: Path,
    out_dir: Path,
    texts: list[str],
    *,
    tokenizer,
    max_length: int,
    device: str | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantize `checkpoint` into `out_dir` as compressed-tensors W8A8; returns timings in seconds."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype="auto", device_map=device or "cpu")
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    recipe = [
        SmoothQuantModifier(smoothing_strength=SMOOTHING_STRENGTH),
        GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]),
    ]
    loaded = time.perf_counter()
    torch.manual_seed(seed)
    with _quiet_llmcompressor():
        try:
            oneshot(model=model, dataset=dataset, recipe=recipe, max_seq_length=max_length,
                    num_calibration_samples=len(texts), shuffle_calibration_samples=False)
        except (ValueError, RuntimeError) as e:
            if "mapping" in str(e).lower():
                raise MgaError(f"w8a8: SmoothQuant cannot map this architecture's norms to its linear layers ({e}); "
                               "use --scheme gptq-w4 or gptq-w8") from None
            raise
        quantized = time.perf_counter()
        model.save_pretrained(out_dir, save_compressed=True)
    return {"load_s": loaded - started, "quantize_s": quantized - loaded, "save_s": time.perf_counter() - quantized}
