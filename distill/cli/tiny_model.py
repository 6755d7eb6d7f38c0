"""`mga tiny-model`: a tiny local causal LM + tokenizer, no download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.console import console


def tiny_model(
    out: Annotated[Path, typer.Argument(help="Output folder (config, weights, tokenizer, chat template).")],
    arch: Annotated[str, typer.Option(help="Architecture: qwen2 or llama.")] = "qwen2",
    size: Annotated[str, typer.Option(help="xs (hidden 128, ~1.3M params) or s (hidden 256, ~4.5M).")] = "xs",
    seed: Annotated[int, typer.Option(help="Weight-init seed; the same seed gives the same files.")] = 0,
    corpus: Annotated[Path | None, typer.Option(help="JSONL text to train the BPE on; default: bundled sample.")] = None,
) -> None:
    """Build a tiny, randomly initialised causal LM with a ChatML tokenizer trained on local text.

    For tests and the offline quickstart: loadable by AutoModelForCausalLM / AutoTokenizer, eos = <|im_end|>,
    a pad token, and a chat template with generation tags (assistant-only loss works).
    """
    from mga.distill.core.io import check_output
    from mga.distill.train.tiny_model import build_tiny_model

    check_output(out, folder=True)

    path = build_tiny_model(out, arch=arch, size=size, seed=seed, corpus=corpus)  # type: ignore[arg-type]
    console.print(f"tiny {arch}-{size} model written to {path}", markup=False)
