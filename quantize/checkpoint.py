"""What can be exported: a full or merged checkpoint folder (not a bare LoRA adapter, not already quantized)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.weights import weight_files


def check_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's config.json, after refusing what cannot be quantized (adapter only, quantized, missing)."""
    if not checkpoint.is_dir():
        raise MgaError(f"{checkpoint}: not a checkpoint folder")
    if (checkpoint / "adapter_config.json").exists() and not weight_files(checkpoint):
        raise MgaError(f"{checkpoint}: a LoRA adapter without full weights cannot be quantized; "
                       "merge first: mga train --merge (then quantize the merged folder)")
    config_path = checkpoint / "config.json"
    if not config_path.exists() or not weight_files(checkpoint):
        raise MgaError(f"{checkpoint}: no config.json and model weights (a full or merged checkpoint is needed)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise MgaError(f"{checkpoint}: already quantized ({method}); quantize the full-precision checkpoint")
    return config
