"""Tokens/s of the local generation backends on a real 135M model, as ratios to transformers fp32, in one run.

    python bench/generate_backends.py [--checkpoint DIR] [--prompts 4] [--tokens 96]

DIR defaults to SmolLM2-135M-Instruct converted by `mga base-model` (cached under bench/.cache/); pass a trained
tool model (runs/quickstart/models/round-2/rewrite/model) to measure that. Each engine answers the same chat
prompts greedily through the toolkit's `LocalGenerator` (what `mga run` and `mga expand` use): transformers fp32,
GPTQ 4-bit in transformers (GPTQModel's CPU kernel), llama.cpp on the f16, q8_0 and q4_k_m GGUF exports. Printed:
generated tokens per second of wall time (prompt processing included, model loading excluded) and the ratio
to transformers fp32 measured in the same run. One try each on a shared machine: differences under ~10% are noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.cli.main import configure_environment  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
configure_environment()
PROMPTS = [
    "Rewrite this for a ten-year-old: the break statement ends the nearest enclosing loop.",
    "Propose a genre and an audience for a text about Python's list comprehensions.",
    "Summarise the Zen of Python in three sentences for a sceptical manager.",
    "Explain what a lambda expression is, as a radio host would.",
    "Write a short letter to a grandparent about learning to program.",
    "Describe the difference between a tuple and a list to a carpenter.",
]


def engines(checkpoint: Path) -> list[tuple[str, str, Path]]:
    """(label, backend, model path) for every engine, exporting the quantized files once (cached)."""
    from mga.quantize.export import quantize_checkpoint

    out = [("transformers fp32", "transformers", checkpoint)]
    work = CACHE / f"backends-{checkpoint.name}"
    gptq = work / "gptq-w4"
    if not (gptq / "mga_quantize.json").exists():
        quantize_checkpoint(checkpoint, gptq, "gptq-w4", group_size=64, num_samples=32, max_length=256)
    out.append(("transformers GPTQ-4 (GPTQModel CPU kernel)", "transformers", gptq))
    for scheme in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m"):
        folder = work / scheme
        if not (folder / "mga_quantize.json").exists():
            quantize_checkpoint(checkpoint, folder, scheme)
        out.append((f"llama.cpp {scheme[5:]}", "llamacpp", next(folder.glob("*.gguf"))))
    return out


def measure(backend: str, model: Path, prompts: list[str], tokens: int) -> tuple[float, int]:
    from mga.distill.core.config import GenerationParams
    from mga.distill.generate.local import LocalGenerator
    from mga.distill.generate.protocol import Request

    params = GenerationParams(temperature=0.0, max_tokens=tokens)
    generator = LocalGenerator(str(model), backend=backend, batch_size=len(prompts))
    requests = [Request(key=str(i), messages=[{"role": "user", "content": p}], params=params) for i, p in enumerate(prompts)]
    started = time.perf_counter()
    results = list(generator.run(requests, description=backend))
    seconds = time.perf_counter() - started
    generated = sum(r.completion.completion_tokens for r in results if r.completion is not None)
    return generated / seconds, generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from mga.distill.train.base_model import build_base_model

        checkpoint = build_base_model("smollm2-135m", CACHE / "smollm2-135m")
    prompts = (PROMPTS * 4)[: args.prompts]
    results = []
    for label, backend, model in engines(checkpoint):
        rate, generated = measure(backend, model, prompts, args.tokens)
        results.append((label, rate, generated, model.stat().st_size if model.is_file() else None))
    base = results[0][1]
    print(f"\n{len(prompts)} prompts x up to {args.tokens} new tokens, greedy, {os.cpu_count()} cores, {checkpoint}")
    print(f"{'engine':44} {'tokens/s':>9} {'x transformers':>15} {'tokens':>7}")
    for label, rate, generated, _ in results:
        print(f"{label:44} {rate:9.1f} {rate / base:15.2f} {generated:7d}")


if __name__ == "__main__":
    main()
