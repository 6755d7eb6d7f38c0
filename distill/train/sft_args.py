"""TRL's `SFTConfig` with the paper's defaults, subclassed as alignment-handbook does: every field, type and
check is TRL's own; this class changes defaults (3 epochs, cosine schedule, 8k sequences, loss on the answer
only) and adds the range checks TRL leaves to training time. Imports TRL: load it only where training is."""

from __future__ import annotations

import dataclasses
import difflib
import tempfile
from dataclasses import dataclass
from typing import Any

from mga.distill.core.secrets import MASK
from pydantic import ConfigDict, TypeAdapter, ValidationError
from transformers.trainer_utils import SchedulerType
from trl import SFTConfig

POSITIVE = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length")


@dataclass
class MgaSFTConfig(SFTConfig):
    learning_rate: float = 1e-5
    lr_scheduler_type: SchedulerType | str = "cosine"
    warmup_steps: float = 0.03  # below 1: a ratio of all steps (transformers 5)
    max_length: int | None = 8192  # the paper: prompt <= 4k + answer <= 4k tokens
    assistant_only_loss: bool = True  # next-token loss on the rewrite only, given (document, genre, audience)
    gradient_checkpointing: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in POSITIVE:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: Input should be greater than 0 (got {value!r})")
        super().__post_init__()


MgaSFTConfig.__pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)
FIELDS = {f.name for f in dataclasses.fields(MgaSFTConfig) if f.init}


def unknown_keys(values: dict[str, Any], fields: set[str], loc: str, owner: str) -> list[str]:
    errors = []
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            errors.append(f"{loc}.{key}: unknown key for {owner}" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return errors


def sft_config(values: dict[str, Any]) -> MgaSFTConfig:
    """Validate `values` by TRL's own field types and checks (through pydantic) and build the config."""
    return TypeAdapter(MgaSFTConfig).validate_python(values)


def _line(err: dict[str, Any], secret_fields: set[str]) -> str:
    """A pydantic error as `train.<field>: <message> (got <value>)`; a check of `__post_init__` names its field
    at the start of its message."""
    where = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    if where:
        secret = where.split(".")[0] in secret_fields
        shown = "" if isinstance(err.get("input"), dict) else f" (got {MASK if secret else repr(err.get('input'))})"
        return f"train.{where}: {err['msg']}{shown}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"train.{msg}" if msg.split(":")[0] in FIELDS else f"train: {msg}"


def sft_errors(values: dict[str, Any], lora: dict[str, Any] | None, secret_fields: set[str] = frozenset()) -> list[str]:
    """One line per problem in the `train:` SFT fields and `train.lora:` LoraConfig fields of a recipe.

    Checked on a CPU placeholder (`use_cpu`), so a GPU recipe validates on a laptop too."""
    errors = unknown_keys(values, FIELDS, "train", "SFTConfig")
    if not errors:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                sft_config({**values, "output_dir": tmp, "use_cpu": True})
            except ValidationError as e:
                errors += [_line(err, secret_fields) for err in e.errors()]
            except (ValueError, TypeError) as e:
                errors.append(f"train: {str(e).splitlines()[0]}")
    if lora is not None:
        from peft import LoraConfig

        errors += unknown_keys(lora, {f.name for f in dataclasses.fields(LoraConfig) if f.init}, "train.lora", "LoraConfig")
    return errors
