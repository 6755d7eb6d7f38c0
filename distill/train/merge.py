"""Merge a trained LoRA adapter into its base, so quantization and serving see one plain checkpoint."""

from __future__ import annotations

from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.train.tokenizer_check import sync_special_tokens


def merge_lora(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Merge a LoRA adapter into its full-precision base and save a plain checkpoint (model + tokenizer).
    A GPTQ (or other quantized) base is refused: merge into the full-precision base first, quantize after."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise MgaError(f"{adapter_dir}: not a LoRA adapter (no adapter_config.json)")
    peft_config = PeftConfig.from_pretrained(str(adapter_dir))
    if peft_config.peft_type != "LORA":
        raise MgaError(f"{adapter_dir}: a {peft_config.peft_type} adapter, not LoRA")
    base = peft_config.base_model_name_or_path
    try:
        base_config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as e:
        raise MgaError(f"cannot load the adapter's base model '{base}': {str(e).splitlines()[0]}") from None
    if getattr(base_config, "quantization_config", None):
        raise MgaError(
            f"cannot merge LoRA into the quantized base '{base}': merge into the full-precision base, then quantize"
        )
    dtype = getattr(base_config, "dtype", None) or torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged = merged.to(dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), torch.float32))
    tokenizer_src = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_src))
    sync_special_tokens(merged, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
