"""Training configuration: the toolkit's own keys, typed here, plus any field of TRL's `SFTConfig`.

The SFT fields are not re-declared: they pass through to `MgaSFTConfig` (TRL's dataclass with the paper's
defaults, `sft_args.py`) and are validated by it once, when the recipe is loaded (`sft_errors`).
"""

from __future__ import annotations

import typing
from typing import Any

from mga.distill.core.config import Section
from mga.distill.core.secrets import Secret, is_secret
from pydantic import ConfigDict, Field, PositiveInt


class TrainConfig(Section):
    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

    student: str = Field("tiny:qwen2:xs", description="local path or hub id; 'tiny:ARCH:SIZE' builds a tiny model; "
                         "'smollm2-135m' converts the packaged SmolLM2-135M-Instruct (mga base-model)")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="documents held out for evaluation")
    lora: dict[str, Any] | None = Field(None, description="PEFT LoraConfig fields; null = full fine-tune")
    merge: bool = Field(True, description="merge LoRA into a full checkpoint after training")
    qlora: bool = Field(False, description="LoRA on a 4-bit (bitsandbytes NF4) base; needs CUDA and train.lora")
    num_processes: PositiveInt = Field(1, description="training processes (GPUs); > 1 runs through accelerate/torchrun")
    accelerate_config: str | None = Field(
        None, description="ddp, fsdp, zero3 (data/accelerate/<name>.yaml, shipped) or a path to an accelerate config"
    )
    launcher: typing.Literal["auto", "accelerate", "torchrun"] = Field(
        "auto", description="auto = accelerate on CUDA, torchrun (gloo) on CPU"
    )
    # not in any dump (so not in the stages' fingerprints either: a run made before the field existed stays current)
    hub_token: Secret | None = Field(None, exclude=True, description="SFTConfig.hub_token (push_to_hub); never written")

    def sft_kwargs(self) -> dict[str, Any]:
        """The recipe's `SFTConfig` fields (everything that is not a toolkit key, and the secret one)."""
        secret = {} if self.hub_token is None else {"hub_token": self.hub_token.get_secret_value()}
        return {**(self.model_extra or {}), **secret}


def passthrough_errors(train: TrainConfig) -> list[str]:
    """Problems in the keys passed through to TRL and PEFT (imports them only when such keys are set: slow)."""
    if not train.model_extra and train.lora is None:
        return []
    from mga.distill.train.sft_args import sft_errors

    secret_fields = {name for name in TrainConfig.model_fields if is_secret(TrainConfig, [name])}
    return sft_errors(train.sft_kwargs(), train.lora, secret_fields)
