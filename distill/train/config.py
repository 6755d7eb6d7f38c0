"""Typed training configuration: our own keys plus TRL `SFTConfig` / PEFT `LoraConfig` fields passed through.

The common SFT fields are declared here with the paper's defaults (3 epochs, cosine schedule, 8k sequences)
so they are validated without importing TRL; any other `SFTConfig` field may be set in a recipe and is
checked against TRL's own dataclass by `passthrough_errors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from mga.distill.core.config import Section
from pydantic import (
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
)

# Our keys that are not SFTConfig fields.
OWN_KEYS = {"student", "eval_fraction", "lora", "merge", "stages", "qlora"}


class TrainConfig(Section):
    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

    student: str = Field("tiny:qwen2:xs", description="local path or hub id; 'tiny:ARCH:SIZE' builds a tiny model")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="documents held out for evaluation")
    lora: dict[str, Any] | None = Field(None, description="PEFT LoraConfig fields; null = full fine-tune")
    merge: bool = Field(True, description="merge LoRA into a full checkpoint after training")
    qlora: bool = Field(False, description="LoRA on a 4-bit (bitsandbytes NF4) base; needs CUDA and train.lora")
    stages: list[typing.Literal["pairs", "rewrite"]] = Field(default_factory=lambda: ["pairs", "rewrite"])
    learning_rate: PositiveFloat = 1e-5
    num_train_epochs: PositiveFloat = 3.0
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0.03, ge=0.0, description="steps; a value below 1 is a ratio of all steps (transformers 5)")
    per_device_train_batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    max_length: PositiveInt = 8192
    packing: bool = False
    padding_free: bool = False
    assistant_only_loss: bool = True
    gradient_checkpointing: bool = False
    logging_steps: PositiveInt = 10
    seed: int = 0

    def sft_kwargs(self) -> dict[str, Any]:
        """Everything that goes to `SFTConfig(**...)`."""
        data = self.model_dump(exclude=OWN_KEYS)
        return {**data, **(self.model_extra or {})}


def _dataclass_hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        hints = {}
    return {name: hints.get(name, Any) for name in names}


def check_fields(values: dict[str, Any], cls: type, loc: str) -> list[str]:
    """Errors for keys that are not fields of dataclass `cls`, or whose values do not fit the field's type."""
    hints = _dataclass_hints(cls)
    errors = []
    for key, value in values.items():
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            errors.append(f"{loc}.{key}: unknown key for {cls.__name__}{hint}")
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as e:
            errors.append(f"{loc}.{key}: {e.errors()[0]['msg']} (got {value!r})")
        except Exception:  # noqa: BLE001 - a type pydantic cannot build a validator for: accept
            pass
    return errors


def passthrough_errors(train: TrainConfig) -> list[str]:
    """Check the keys passed through to TRL and PEFT (imports them only when such keys are set: slow)."""
    if not train.model_extra and train.lora is None:
        return []
    from peft import LoraConfig
    from trl import SFTConfig

    errors = check_fields(dict(train.model_extra or {}), SFTConfig, "train")
    if train.lora is not None:
        errors += check_fields(train.lora, LoraConfig, "train.lora")
    return errors
