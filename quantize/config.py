"""Typed configuration of quantized export."""

from __future__ import annotations

from typing import Literal

from mga.distill.core.config import Section
from pydantic import Field, PositiveInt

Scheme = Literal["gptq-w4", "gptq-w8", "w8a8", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"]


class QuantizeConfig(Section):
    schemes: list[Scheme] = Field(default_factory=lambda: ["gptq-w4"], description="empty = skip quantization")
    group_size: int = Field(128, description="GPTQ group size; -1 = per channel")
    desc_act: bool = False
    calibration_samples: PositiveInt = Field(512, description="calibration rows (maintainers' advice ~512)")
    calibration_max_length: PositiveInt = 2048
    corpus_fraction: float = Field(0.25, ge=0.0, le=1.0, description="share of general corpus text in calibration")
    eval: bool = True
    task_rows: PositiveInt = Field(32, description="eval: prompts both models answer for the task-level checks")
    task_max_new_tokens: PositiveInt = Field(256, description="eval: new tokens per answer in the task-level checks")
