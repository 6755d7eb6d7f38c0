"""Full versus quantized on held-out rows: perplexity on the answers, size, load time, generation speed.

Perplexity is measured on what the tool model is for: the assistant answer of each held-out SFT
conversation (the prompt is context, not scored); plain `text` rows are scored whole. Both models are
loaded the way a user loads them (`AutoModelForCausalLM.from_pretrained`, dtype from the checkpoint).
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path
from typing import Any

from mga.distill.core.console import track
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json


def _safetensors_sizes(folder: Path) -> dict[str, int]:
    """Bytes of every tensor in the folder's safetensors files, read from the headers only."""
    sizes: dict[str, int] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                sizes[name] = end - start
    return sizes


def linear_layer_names(model) -> set[str]:
    """Names of the linear layers a quantizer touches: every nn.Linear-like module except the LM head."""
    import torch

    head = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if module is head or not name:
            continue
        if isinstance(module, torch.nn.Linear) or hasattr(module, "qweight"):
            names.add(name)
    return names


def checkpoint_sizes(folder: Path, linear_names: set[str], linear_params: int) -> dict[str, Any]:
    """Total weight bytes, bytes of the linear layers (with their scales and zeros), and that over fp16."""
    sizes = _safetensors_sizes(folder)
    linear = sum(size for name, size in sizes.items() if name.rsplit(".", 1)[0] in linear_names)
    return {
        "total_bytes": sum(sizes.values()),
        "linear_bytes": linear,
        "linear_bytes_over_fp16": round(linear / (2 * linear_params), 4) if linear_params else None,
    }


def scored_example(tokenizer, row: dict[str, Any], max_length: int):
    """(input ids, labels) with -100 on the prompt: the answer of a `messages` row, or all of a `text` row."""
    if isinstance(row.get("messages"), list) and row["messages"] and row["messages"][-1].get("role") == "assistant":
        messages = row["messages"]
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
        if len(ids) > max_length:  # keep the answer: cut the prompt from the left
            ids, labels = ids[-max_length:], labels[-max_length:]
        return ids, labels
    if isinstance(row.get("text"), str) and row["text"].strip():
        ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"][:max_length]
        return ids, list(ids)
    return None


def prompt_of(tokenizer, row: dict[str, Any], max_length: int) -> list[int]:
    if isinstance(row.get("messages"), list) and row["messages"]:
        turns = row["messages"][:-1] if row["messages"][-1].get("role") == "assistant" else row["messages"]
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    return tokenizer(row["text"], add_special_tokens=False)["input_ids"][: max_length // 2]


def perplexity(model, examples: list[tuple[list[int], list[int]]], description: str) -> float:
    """exp(mean negative log-likelihood over all scored tokens), one example at a time (no padding effects)."""
    import torch

    nll, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in track(examples, description):
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
            target = torch.tensor(labels[1:], device=logits.device)
            mask = target != -100
            if mask.any():
                nll += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
                count += int(mask.sum())
    if not count:
        raise MgaError("held-out rows have no answer tokens to score")
    return math.exp(nll / count)


def generation_speed(model, tokenizer, prompts: list[list[int]], gen_tokens: int) -> float:
    """Greedy new tokens per second, forcing exactly `gen_tokens` per prompt so both models do the same work."""
    import torch

    produced, seconds = 0, 0.0
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=model.device)
            started = time.perf_counter()
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=gen_tokens, min_new_tokens=gen_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
            seconds += time.perf_counter() - started
            produced += out.shape[1] - x.shape[1]
    return produced / seconds if seconds else 0.0


def measure(folder: Path, examples, prompts, tokenizer, gen_tokens: int, linear_params: int | None) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    model.eval()
    load_s = time.perf_counter() - started
    torch.manual_seed(0)
    ppl = perplexity(model, examples, f"perplexity {folder.name}")
    names = linear_layer_names(model)
    if linear_params is None:
        linear_params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                            for n, m in model.named_modules() if n in names)
    speed = generation_speed(model, tokenizer, prompts, gen_tokens)
    return {"path": str(folder), "perplexity": round(ppl, 4), "load_s": round(load_s, 3),
            "tokens_per_s": round(speed, 2), "dtype": str(model.dtype).removeprefix("torch."),
            "linear_params": linear_params, **checkpoint_sizes(folder, names, linear_params)}


def compare(
    full: Path,
    quantized: Path,
    heldout: Path | list[dict],
    out_json: Path,
    *,
    max_rows: int = 64,
    gen_tokens: int = 32,
    gen_prompts: int = 4,
    max_length: int = 1024,
) -> dict[str, Any]:
    """Measure both checkpoints on the same held-out rows and write the comparison (with ratios) to `out_json`."""
    from transformers import AutoTokenizer

    full, quantized = Path(full), Path(quantized)
    rows = read_rows(heldout) if isinstance(heldout, (str, Path)) else list(heldout)
    tokenizer = AutoTokenizer.from_pretrained(full)
    scored = [(row, ex) for row in rows[:max_rows] if (ex := scored_example(tokenizer, row, max_length))]
    if not scored:
        raise MgaError(f"{heldout if isinstance(heldout, (str, Path)) else 'heldout'}: no rows with "
                       "'messages' ending in an assistant answer, or with 'text'")
    examples = [ex for _, ex in scored]
    prompts = [prompt_of(tokenizer, row, max_length) for row, _ in scored[:gen_prompts]]
    full_m = measure(full, examples, prompts, tokenizer, gen_tokens, None)
    quant_m = measure(quantized, examples, prompts, tokenizer, gen_tokens, full_m["linear_params"])
    marker = quantized / "mga_quantize.json"
    info = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}

    def ratio(key: str) -> float | None:
        return round(quant_m[key] / full_m[key], 4) if full_m.get(key) else None

    result = {
        "scheme": info.get("scheme"), "heldout": str(heldout) if isinstance(heldout, (str, Path)) else None,
        "rows": len(examples), "scored_tokens": sum(sum(1 for t in labels[1:] if t != -100) for _, labels in examples),
        "gen_tokens": gen_tokens, "full": full_m, "quantized": quant_m,
        "ratios": {"perplexity": ratio("perplexity"), "total_bytes": ratio("total_bytes"),
                   "linear_bytes": ratio("linear_bytes"), "load_s": ratio("load_s"),
                   "tokens_per_s": ratio("tokens_per_s")},
    }
    write_json(out_json, result)
    return result
