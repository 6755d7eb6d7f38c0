"""SFT data from kept labels: chat `messages` built with the very prompts the teacher saw.

Stage 1 (pairs): system + user(original text) -> assistant(JSON with the pairs).
Stage 2 (rewrite): system + user(original, genre, audience) -> assistant(the rewrite).
The evaluation split is drawn by document (docid), so no document has rows on both sides.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, write_json, write_rows
from mga.distill.core.prompts import pairs_messages, rewrite_messages
from mga.distill.core.schema import OK, TOOL_MODELS, chunk_key, is_control, rewrite_key


def _check_stage(stage: str) -> None:
    if stage not in TOOL_MODELS:
        raise MgaError(f"unknown SFT stage '{stage}' (choose pairs or rewrite)")


def unusable_reason(row: dict[str, Any], stage: str) -> str | None:
    """Why a row cannot become a training example, or None when it can."""
    meta = row.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("raw_text"), str) or "docid" not in meta:
        return "no meta.raw_text/meta.docid"
    if is_control(row):
        return "a judge control (never training data)"
    if row.get("status", OK) != OK:
        return f"status {row.get('status')}"
    if stage == "pairs":
        pairs = row.get("pairs")
        if not isinstance(pairs, list) or not pairs:
            return "no pairs (not a stage-1 row?)"
        if not all(isinstance(p, dict) and p.get("genre") and p.get("audience") for p in pairs):
            return "a pair without genre or audience"
        return None
    if not isinstance(row.get("content_split"), str) or not row["content_split"].strip():
        return "empty content_split (not a stage-2 row?)"
    if not meta.get("genre") or not meta.get("audience"):
        return "no meta.genre/meta.audience"
    return None


def sft_messages(row: dict[str, Any], stage: str, language: str = "en", num_pairs: int = 5) -> list[dict[str, str]]:
    """The chat example for one kept row: the teacher's prompt plus the teacher's (kept) answer."""
    _check_stage(stage)
    if (reason := unusable_reason(row, stage)) is not None:
        raise MgaError(f"row cannot be an SFT example for stage {stage}: {reason}")
    meta = row["meta"]
    if stage == "pairs":
        pairs = [{"genre": p["genre"], "audience": p["audience"]} for p in row["pairs"]]
        prompt = pairs_messages(meta["raw_text"], language, num_pairs)
        answer = json.dumps({"pairs": pairs}, ensure_ascii=False)
    else:
        prompt = rewrite_messages(meta["raw_text"], meta["genre"], meta["audience"], row.get("variant") or "base", language)
        answer = row["content_split"]
    return [*prompt, {"role": "assistant", "content": answer}]


def split_docids(docids: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of documents: (train, eval). At least one document on each side when the fraction is
    positive and there are two or more documents."""
    if not 0.0 <= eval_fraction < 1.0:
        raise MgaError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    order = sorted(set(docids))
    random.Random(seed).shuffle(order)
    n_eval = round(len(order) * eval_fraction)
    if eval_fraction > 0 and len(order) >= 2:
        n_eval = min(max(n_eval, 1), len(order) - 1)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def sft_example(row: dict[str, Any], stage: str, language: str = "en", num_pairs: int = 5) -> dict[str, Any]:
    """One SFT example of a usable labeled row: {"messages", "docid", "key"}, + "meta" for rewrites (what a judge
    needs to score a model's rewrite of the same prompt)."""
    key = chunk_key(row) if stage == "pairs" else rewrite_key(row)
    example = {"messages": sft_messages(row, stage, language, num_pairs), "docid": str(row["meta"]["docid"]), "key": key}
    if stage == "rewrite":
        example["meta"] = dict(row["meta"])
    return example


def build_sft_datasets(
    rows_path: str | Path,
    stage: str,
    out_dir: str | Path,
    *,
    language: str = "en",
    eval_fraction: float = 0.1,
    seed: int = 0,
    num_pairs: int = 5,
) -> tuple[Path, Path]:
    """Write out_dir/train.jsonl, out_dir/eval.jsonl ({"messages", "docid", "key"}, + "meta" for rewrites) and
    out_dir/split.json."""
    _check_stage(stage)
    rows_path, out_dir = Path(rows_path), Path(out_dir)
    key_of = chunk_key if stage == "pairs" else rewrite_key
    examples: dict[str, dict[str, Any]] = {}
    skipped: Counter[str] = Counter()
    for row in iter_rows(rows_path):
        if (reason := unusable_reason(row, stage)) is not None:
            skipped[reason] += 1
            continue
        key = key_of(row)
        if key not in examples:
            examples[key] = sft_example(row, stage, language, num_pairs)
    if skipped:
        detail = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        console.print(f"sft data ({stage}): skipped {sum(skipped.values())} rows ({detail})", markup=False, soft_wrap=True)
    if not examples:
        raise MgaError(
            f"{rows_path}: no usable rows for SFT stage '{stage}' "
            f"(need status ok {'pairs' if stage == 'pairs' else 'rewrite/judged'} rows; skipped: {dict(skipped) or 'none'})"
        )
    train_docs, eval_docs = split_docids([e["docid"] for e in examples.values()], eval_fraction, seed)
    held_out = set(eval_docs)
    train_path = write_rows(out_dir / "train.jsonl", (e for e in examples.values() if e["docid"] not in held_out))
    eval_path = write_rows(out_dir / "eval.jsonl", (e for e in examples.values() if e["docid"] in held_out))
    write_json(
        out_dir / "split.json",
        {"stage": stage, "seed": seed, "eval_fraction": eval_fraction, "source": str(rows_path),
         "train": train_docs, "eval": eval_docs},
    )
    n_eval = sum(1 for e in examples.values() if e["docid"] in held_out)
    console.print(
        f"sft data ({stage}): {len(examples) - n_eval} train / {n_eval} eval examples "
        f"({len(train_docs)} / {len(eval_docs)} documents) -> {out_dir}",
        markup=False, soft_wrap=True,
    )
    return train_path, eval_path
