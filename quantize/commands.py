"""`mga quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import not_implemented


def quantize(
    checkpoint: Annotated[Path, typer.Argument(help="Full or merged-LoRA checkpoint folder.")],
    scheme: Annotated[str, typer.Option(help="gptq-w4, gptq-w8 or w8a8.")] = "gptq-w4",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.")] = None,
    group_size: Annotated[int, typer.Option(help="GPTQ group size (-1 = per channel).")] = 128,
    desc_act: Annotated[bool, typer.Option(help="GPTQ act-order.")] = False,
    eval: Annotated[bool, typer.Option("--eval", help="Compare full vs quantized on held-out prompts.")] = False,
) -> None:
    """Quantize a tool model for deployment (GPTQ via GPTQModel, W8A8 via llm-compressor)."""
    not_implemented("quantize", "issue: quantization")
