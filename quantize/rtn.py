"""Round-to-nearest fake quantization: the no-calibration baseline GPTQ has to beat (comparison only)."""

from __future__ import annotations

import torch


def rtn_weight(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """`weight` rounded onto GPTQ's symmetric grid (same scale and zero rule), per group of input columns."""
    rows, cols = weight.shape
    size = cols if group_size in (-1, 0) or group_size >= cols else group_size
    if cols % size:
        raise ValueError(f"group size {size} does not divide {cols} input features")
    maxq = 2**bits - 1
    w = weight.detach().float().reshape(rows, cols // size, size)
    amax = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)
    scale = 2 * amax / maxq
    zero = (maxq + 1) / 2
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return ((q - zero) * scale).reshape(rows, cols).to(weight.dtype)


@torch.no_grad()
def rtn_quantize_(model: torch.nn.Module, bits: int, group_size: int) -> int:
    """Fake-quantize, in place, every linear layer GPTQ would quantize (all but the LM head); returns how many."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            module.weight.copy_(rtn_weight(module.weight, bits, group_size))
            count += 1
    return count
