"""Task-level checks of an export: does the quantized tool model still do its job on prompts it was not trained on?

Pairs model (SLM-1): share of prompts answered with valid JSON of exactly 5 distinct pairs, full vs quantized.
Rewrite model (SLM-2): greedy-output agreement with the full model (share of identical outputs, mean token-level
overlap) and, when the caller passes a judge, judged Rate(>=3) of both on the same prompts. Both: the share of
outputs that end at the end-of-turn token. The checks of validity and the judge come from the caller
(`mga.judge`), so this step depends on no other step.

Rows: the held-out SFT rows beside the checkpoint (`../data/eval.jsonl`) when there are any, else the training rows,
and the result says which (`rows_used`), so no table calls training rows held out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.console import track
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows

PairsCheck = Callable[[str], "str | None"]  # answer -> why it is not 5 valid distinct pairs, None when it is
JudgeRate = Callable[[list[dict[str, Any]], str], float]  # (rewrite rows, label) -> Rate(>=3) in percent


def eval_rows(checkpoint: Path, given: Path | None = None) -> tuple[list[dict[str, Any]], str, Path]:
    """(rows, honest label, file): `given`, else held-out SFT rows beside the checkpoint, else its training rows."""
    data = Path(checkpoint).parent / "data"
    train = data / "train.jsonl"
    if given is not None:
        rows = read_rows(given)
        if train.exists():
            seen = {json.dumps(r.get("messages"), sort_keys=True) for r in read_rows(train)}
            trained = sum(json.dumps(r.get("messages"), sort_keys=True) in seen for r in rows)
            return rows, f"given rows {given} ({trained} of {len(rows)} are in the training data {train})", given
        return rows, f"given rows {given} (training data unknown)", given
    if (data / "eval.jsonl").exists() and (rows := read_rows(data / "eval.jsonl")):
        return rows, f"held-out SFT rows, not trained on ({data / 'eval.jsonl'})", data / "eval.jsonl"
    if train.exists():
        return read_rows(train), f"SFT training rows: the model was trained on them, no held-out rows exist ({train})", train
    raise MgaError(f"no rows to check the export on: no {data / 'eval.jsonl'} or {train}; pass --heldout ROWS_JSONL")


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """Share of identical outputs; mean token overlap = positions with the same token / the longer output's length."""
    if len(reference) != len(other) or not reference:
        raise MgaError("agreement needs the same, non-empty set of prompts on both sides")
    identical = sum(a == b for a, b in zip(reference, other))
    overlaps = [sum(x == y for x, y in zip(a, b)) / max(len(a), len(b)) if (a or b) else 1.0
                for a, b in zip(reference, other)]
    return {"identical": round(identical / len(reference), 4), "token_overlap": round(sum(overlaps) / len(overlaps), 4)}


def greedy(folder: Path, prompts: list[list[int]], max_new_tokens: int, description: str) -> list[dict[str, Any]]:
    """Greedy continuations of `prompts` with the checkpoint in `folder`: new token ids and whether it stopped."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    model.eval()
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    outputs = []
    with torch.no_grad():
        for ids in track(prompts, description):
            x = torch.tensor([ids], device=model.device)
            new = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=max_new_tokens)[0, x.shape[1]:].tolist()
            stopped = bool(new) and new[-1] in stops
            outputs.append({"ids": new[:-1] if stopped else new, "stopped": stopped})
    return outputs


def chat_prompt(tokenizer, row: dict[str, Any]) -> list[int]:
    turns = row["messages"][:-1] if row["messages"][-1].get("role") == "assistant" else row["messages"]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stage_of(checkpoint: Path, rows: list[dict[str, Any]], pairs_check: PairsCheck | None) -> str:
    """`pairs` or `rewrite`: from train_config.json beside the checkpoint, else from the reference answers."""
    config = Path(checkpoint).parent / "train_config.json"
    if config.exists() and (stage := json.loads(config.read_text()).get("stage")) in ("pairs", "rewrite"):
        return stage
    answers = [r["messages"][-1]["content"] for r in rows if r["messages"][-1].get("role") == "assistant"]
    if pairs_check and answers and sum(pairs_check(a) is None for a in answers) > len(answers) / 2:
        return "pairs"
    return "rewrite"


def task_checks(
    full: Path,
    quantized: Path,
    rows: list[dict[str, Any]],
    out_dir: Path,
    *,
    rows_used: str,
    stage: str,
    pairs_check: PairsCheck | None = None,
    judge_rate: JudgeRate | None = None,
    max_rows: int = 32,
    max_new_tokens: int = 256,
) -> dict[str, Any]:
    """Both models answer the same chat prompts greedily; writes out_dir/task_outputs.jsonl; returns the checks."""
    from transformers import AutoTokenizer

    rows = [r for r in rows if isinstance(r.get("messages"), list) and r["messages"]][:max_rows]
    if not rows:
        raise MgaError(f"{rows_used}: no rows with chat 'messages'")
    tokenizer = AutoTokenizer.from_pretrained(full)
    prompts = [chat_prompt(tokenizer, r) for r in rows]
    runs = {name: greedy(folder, prompts, max_new_tokens, f"greedy {name}") for name, folder in
            (("full", full), ("quantized", quantized))}
    texts = {name: [tokenizer.decode(o["ids"], skip_special_tokens=True) for o in outs] for name, outs in runs.items()}
    result: dict[str, Any] = {
        "stage": stage, "rows_used": rows_used, "prompts": len(rows), "max_new_tokens": max_new_tokens,
        "agreement": agreement([o["ids"] for o in runs["full"]], [o["ids"] for o in runs["quantized"]]),
        "stopped_at_end_of_turn": {name: round(sum(o["stopped"] for o in outs) / len(outs), 4) for name, outs in runs.items()},
    }
    if stage == "pairs" and pairs_check is not None:
        result["valid_5_pairs"] = {name: round(sum(pairs_check(t) is None for t in ts) / len(ts), 4) for name, ts in texts.items()}
    if stage == "rewrite" and judge_rate is not None:
        judged = [r for r in rows if isinstance(r.get("meta"), dict) and r["meta"].get("raw_text")]
        if len(judged) == len(rows):
            result["rate_ge3"] = {name: judge_rate([{**r, "key": r.get("key") or str(i), "content_split": t}
                                                    for i, (r, t) in enumerate(zip(rows, ts))], name)
                                  for name, ts in texts.items()}
        else:
            result["rate_ge3"] = "not judged: the rows carry no meta.raw_text/genre/audience (SFT data from an older mga)"
    write_rows(Path(out_dir) / "task_outputs.jsonl", [
        {"key": r.get("key", i), "full": texts["full"][i], "quantized": texts["quantized"][i],
         "identical": runs["full"][i]["ids"] == runs["quantized"][i]["ids"]} for i, r in enumerate(rows)])
    return result
