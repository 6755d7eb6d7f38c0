"""Calibration texts for quantization: the tool model's own SFT conversations, mixed with general corpus text.

GPTQ and SmoothQuant fit their rounding and scales to the activations they see during calibration, so the
default is the data the model will see in production: its SFT prompts and answers rendered through its own
chat template, plus a share of plain corpus text so that no weight direction is left uncalibrated.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.sources import iter_file, resolve


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _load(rows: Path | list[dict] | None) -> list[dict[str, Any]]:
    if rows is None:
        return []
    return read_rows(rows) if isinstance(rows, (str, Path)) else list(rows)


def _has_text(row: dict[str, Any]) -> bool:
    return isinstance(row.get("text"), str) and bool(row["text"].strip())


def _corpus_sample(corpus: Path | list[dict] | None, k: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to `k` (index, row) pairs with text: a seeded reservoir over one streaming read, so a corpus given as a
    folder, glob or file of any size costs k rows of memory."""
    if corpus is None or k <= 0:
        return []
    rows = iter(corpus) if isinstance(corpus, list) else (
        row for path in resolve(corpus).files for _, row in iter_file(path, warn=lambda _: None, columns=["id", "text"]))
    rng, kept, seen = random.Random(f"{seed}:corpus"), [], 0
    for index, row in enumerate(rows):
        if not _has_text(row):
            continue
        seen += 1
        if len(kept) < k:
            kept.append((index, row))
        elif (slot := rng.randrange(seen)) < k:
            kept[slot] = (index, row)
    return kept


def _row_id(row: dict[str, Any], index: int) -> str:
    for key in ("key", "docid", "id"):
        if row.get(key) is not None:
            return str(row[key])
    return f"#{index}"


def _truncate(tokenizer, text: str, max_length: int) -> tuple[str, int]:
    """`text` cut to its first `max_length` tokens, and its token count after the cut."""
    ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length + 1)["input_ids"]
    if len(ids) <= max_length:
        return text, len(ids)
    return tokenizer.decode(ids[:max_length]), max_length


def render_conversation(tokenizer, messages: list[dict[str, str]]) -> str:
    """One SFT conversation as the model sees it: through its own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise MgaError("the checkpoint's tokenizer has no chat template: cannot render SFT rows for calibration")
    return tokenizer.apply_chat_template(messages, tokenize=False)


def build_calibration(
    tokenizer,
    *,
    sft_rows: Path | list[dict] | None,
    corpus_path: Path | None,
    num_samples: int,
    max_length: int,
    corpus_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[list[str], list[dict]]:
    """`num_samples` calibration texts (SFT conversations + `corpus_fraction` corpus text) and where each came from.

    When fewer SFT rows exist than their share, corpus text fills the gap (and the other way round). Each
    text is cut to `max_length` tokens. The record lists, per text: source, row index, row id, a short
    sha256 of the text and its token count, so a run can say exactly what it was calibrated on.
    """
    if num_samples <= 0:
        raise MgaError(f"calibration: num_samples must be positive, got {num_samples}")
    if not 0.0 <= corpus_fraction <= 1.0:
        raise MgaError(f"calibration: corpus_fraction must be within [0, 1], got {corpus_fraction}")
    sft = [(i, r) for i, r in enumerate(_load(sft_rows)) if isinstance(r.get("messages"), list) and r["messages"]]
    if sft_rows is not None and not sft:
        raise MgaError(f"calibration: {sft_rows if isinstance(sft_rows, (str, Path)) else 'sft_rows'}: "
                       "no rows with 'messages' (expected the SFT train.jsonl written by `mga train`)")
    corpus = _corpus_sample(corpus_path, num_samples, seed)
    if corpus_path is not None and not corpus:
        raise MgaError(f"calibration: {corpus_path}: no rows with a non-empty 'text'")

    rng = random.Random(seed)
    rng.shuffle(sft)
    rng.shuffle(corpus)
    want_corpus = round(num_samples * corpus_fraction) if sft else num_samples
    take_sft = min(len(sft), num_samples - min(want_corpus, len(corpus)))
    take_corpus = min(len(corpus), num_samples - take_sft)

    texts: list[str] = []
    record: list[dict] = []
    for source, picked in (("sft", sft[:take_sft]), ("corpus", corpus[:take_corpus])):
        for index, row in picked:
            raw = render_conversation(tokenizer, row["messages"]) if source == "sft" else row["text"]
            text, tokens = _truncate(tokenizer, raw, max_length)
            texts.append(text)
            record.append({"source": source, "index": index, "id": _row_id(row, index),
                           "sha256": text_hash(text), "tokens": tokens})
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [record[i] for i in order]
