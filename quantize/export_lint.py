"""Export linter: what a serving engine reads from an exported folder must match the full model, checked at export.

Failures seen in practice are exports that load but misbehave when served: a chat template that renders
differently, eos/pad ids that drifted, a `generation_config` that does not stop at the end-of-turn token (the
model rambles), GPTQ format fields vLLM misreads (gibberish). `lint_export` lists every such problem;
`quantize_checkpoint` refuses to publish an export that has any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLE_CHAT = [
    {"role": "system", "content": "You are a careful rewriter."},
    {"role": "user", "content": "Rewrite this: the cat sat on the mat."},
    {"role": "assistant", "content": "A cat was sitting on a mat."},
    {"role": "user", "content": "Again, for children."},
]
GPTQ_BITS = (2, 3, 4, 8)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _ids(value: Any) -> set[int]:
    return {v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)}


def end_of_turn_id(tokenizer) -> int | None:
    """The first token the chat template emits after an assistant answer: where generation must stop."""
    marker = "\u2063answer\u2063"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    after = text.split(marker, 1)[1] if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    return ids[0] if ids else None


def _render(tokenizer) -> list[str]:
    return [tokenizer.apply_chat_template(SAMPLE_CHAT, tokenize=False, add_generation_prompt=True),
            tokenizer.apply_chat_template(SAMPLE_CHAT[:3], tokenize=False)]


def lint_tokenizer_and_stops(full: Path, exported: Path) -> list[str]:
    """Chat template, eos/pad ids and generation stops of `exported` against `full`."""
    from transformers import AutoTokenizer

    problems = []
    tok_full, tok_out = AutoTokenizer.from_pretrained(full), AutoTokenizer.from_pretrained(exported)
    if tok_full.chat_template and _render(tok_full) != _render(tok_out):
        problems.append("the chat template renders differently from the full model's")
    if tok_full.get_vocab() != tok_out.get_vocab():
        problems.append("the tokenizer vocabulary differs from the full model's")
    cfg_full, cfg_out = _json(full / "config.json"), _json(exported / "config.json")
    gen = _json(exported / "generation_config.json")
    for name in ("eos", "pad"):
        want = getattr(tok_full, f"{name}_token_id")
        if getattr(tok_out, f"{name}_token_id") != want:
            problems.append(f"tokenizer {name} id {getattr(tok_out, f'{name}_token_id')} != full model's {want}")
        if _ids(cfg_out.get(f"{name}_token_id")) != _ids(cfg_full.get(f"{name}_token_id")):
            problems.append(f"config.json {name}_token_id {cfg_out.get(f'{name}_token_id')} != full model's "
                            f"{cfg_full.get(f'{name}_token_id')}")
    if tok_full.chat_template:
        eot = end_of_turn_id(tok_out)
        if eot is None:
            problems.append("the chat template emits nothing after an assistant answer: no end-of-turn token to stop at")
        elif eot not in _ids(gen.get("eos_token_id")):
            problems.append(f"generation_config.json eos_token_id {gen.get('eos_token_id')} does not include the "
                            f"end-of-turn token {tok_out.convert_ids_to_tokens(eot)!r} (id {eot}): served, it would not stop")
    return problems


def lint_quantization_config(exported: Path) -> list[str]:
    """The `quantization_config` fields vLLM reads, for GPTQ and compressed-tensors (W8A8) checkpoints."""
    q = _json(exported / "config.json").get("quantization_config")
    if not isinstance(q, dict):
        return ["config.json has no quantization_config"]
    method, problems = q.get("quant_method"), []
    if method == "gptq":
        if q.get("bits") not in GPTQ_BITS:
            problems.append(f"GPTQ bits {q.get('bits')!r} is not one vLLM serves ({GPTQ_BITS})")
        if not isinstance(q.get("group_size"), int) or (q["group_size"] < 1 and q["group_size"] != -1):
            problems.append(f"GPTQ group_size {q.get('group_size')!r} must be a positive integer or -1")
        for flag in ("desc_act", "sym"):
            if not isinstance(q.get(flag), bool):
                problems.append(f"GPTQ {flag} {q.get(flag)!r} must be true or false")
        fmt = q.get("checkpoint_format", q.get("format", "gptq"))
        if fmt != "gptq":
            problems.append(f"GPTQ checkpoint_format {fmt!r}: vLLM reads the 'gptq' (v1) packing; other formats load "
                            "and generate garbage")
    elif method == "compressed-tensors":
        if not q.get("config_groups"):
            problems.append("compressed-tensors config without config_groups")
        if q.get("format") not in ("int-quantized", "pack-quantized", "float-quantized", "naive-quantized"):
            problems.append(f"compressed-tensors format {q.get('format')!r} is not one vLLM loads")
    else:
        problems.append(f"quant_method {method!r}: not a format this toolkit exports for vLLM")
    return problems


def lint_export(full: Path, exported: Path) -> list[str]:
    """Every problem a serving engine would hit with `exported` (a GPTQ or W8A8 folder) against `full`."""
    return lint_tokenizer_and_stops(Path(full), Path(exported)) + lint_quantization_config(Path(exported))
