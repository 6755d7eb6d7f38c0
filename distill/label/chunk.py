"""Corpus -> chunks: read documents, skip bad rows with a one-line warning each, sample, split long documents.

A chunk holds at most `chunk_tokens` tokens of the named tokenizer (the paper caps prompts at 4,096 tokens).
Splits fall on paragraph boundaries; a paragraph longer than the cap is split on sentences, then lines, then
words. Without a tokenizer, tokens are estimated from words and punctuation (each CJK character counts as one),
which overestimates BPE counts on ordinary prose, so chunks stay under the cap of most tokenizers.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.config import CorpusConfig
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, write_rows
from mga.distill.core.schema import chunk_row

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+|[^\w\s]")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+|(?<=[。！？；])")
_WORDS = re.compile(r"\S+\s*")

Counter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """Words, punctuation marks and CJK characters: a cheap, tokenizer-free token count."""
    return len(_TOKEN.findall(text))


def token_counter(tokenizer: str | None) -> Counter:
    if tokenizer is None:
        return estimate_tokens
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as e:
        raise MgaError(f"corpus.tokenizer: cannot load tokenizer '{tokenizer}' ({e.__class__.__name__}): "
                       "give a local tokenizer folder, or leave it empty for the built-in estimate") from None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def _pieces(text: str, count: Counter, cap: int) -> list[str]:
    """Split one oversized paragraph into pieces of at most `cap` tokens: sentences, lines, then words."""
    for pattern in (_SENTENCE_END, re.compile(r"\n")):
        parts = [p for p in pattern.split(text) if p.strip()]
        if len(parts) > 1:
            return _pack(parts, count, cap, " " if pattern is _SENTENCE_END else "\n")
    words = _WORDS.findall(text)
    if len(words) > 1:
        return _pack([w.rstrip() for w in words], count, cap, " ")
    # one unbreakable run of characters (a long URL, a base64 blob): cut it by characters
    size = max(1, len(text) * cap // max(count(text), 1))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _pack(parts: list[str], count: Counter, cap: int, sep: str) -> list[str]:
    """Greedily join consecutive parts with `sep` while the chunk stays within `cap` tokens."""
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    sep_tokens = count(sep) if sep.strip() else 0
    for part in parts:
        n = count(part)
        if n > cap:
            if current:
                chunks.append(sep.join(current))
                current, used = [], 0
            chunks.extend(_pieces(part, count, cap))
            continue
        if current and used + sep_tokens + n > cap:
            chunks.append(sep.join(current))
            current, used = [], 0
        used += (sep_tokens if current else 0) + n
        current.append(part)
    if current:
        chunks.append(sep.join(current))
    out = []
    for chunk in chunks:  # joined text can tokenize a little differently from its parts: verify
        if count(chunk) > cap:
            out.extend(_halve(chunk, sep, count, cap))
        else:
            out.append(chunk)
    return out


def _halve(chunk: str, sep: str, count: Counter, cap: int) -> list[str]:
    parts = chunk.split(sep)
    if len(parts) < 2:
        return _pieces(chunk, count, cap)
    middle = len(parts) // 2
    return [
        piece
        for half in (sep.join(parts[:middle]), sep.join(parts[middle:]))
        for piece in ([half] if count(half) <= cap else _halve(half, sep, count, cap))
    ]


def split_document(text: str, cap: int, count: Counter = estimate_tokens) -> list[str]:
    """Chunks of at most `cap` tokens, split on paragraph boundaries when possible."""
    text = text.strip()
    if count(text) <= cap:
        return [text]
    paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
    return [c for c in _pack(paragraphs, count, cap, "\n\n") if c.strip()]


def _read_documents(path: Path, skipped: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every readable row; unreadable ones are reported in `skipped` and left out."""
    if path.suffix == ".parquet":
        yield from enumerate(iter_rows(path), 1)
        return
    if path.suffix not in (".jsonl", ".json"):
        raise MgaError(f"{path}: unsupported corpus file type '{path.suffix}' (use .jsonl or .parquet)")
    if not path.exists():
        raise MgaError(f"{path}: corpus file not found")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                skipped.append(f"{path.name}:{number}: not valid UTF-8 (byte {e.start}), row skipped")
                continue
            except json.JSONDecodeError as e:
                skipped.append(f"{path.name}:{number}: not a JSON row ({e.msg}), row skipped")
                continue
            if not isinstance(row, dict):
                skipped.append(f"{path.name}:{number}: not a JSON object, row skipped")
                continue
            yield number, row


def chunk_corpus(corpus_path: Path, out_path: Path, cfg: CorpusConfig, *, seed: int = 0) -> Path:
    """Write the chunks of a corpus (`schema.chunk_row` rows); bad rows are warned about and skipped."""
    corpus_path, out_path = Path(corpus_path), Path(out_path)
    skipped: list[str] = []
    documents: list[tuple[str, str, str]] = []
    seen: dict[str, tuple[int, str]] = {}
    for number, row in _read_documents(corpus_path, skipped):
        where = f"{corpus_path.name}:{number}"
        if cfg.text_field not in row:
            skipped.append(f"{where}: no '{cfg.text_field}' field (corpus.text_field), row skipped")
            continue
        text = row[cfg.text_field]
        if not isinstance(text, str) or not text.strip():
            skipped.append(f"{where}: empty or non-string '{cfg.text_field}', row skipped")
            continue
        docid = str(row.get(cfg.id_field) or f"{corpus_path.stem}-{number}")
        if docid in seen:
            if seen[docid][1] != text:  # two documents under one id: resume and reports would mix them up
                raise MgaError(f"{corpus_path}: duplicate document id '{docid}' ({cfg.id_field} at rows "
                               f"{seen[docid][0]} and {number}, different texts): document ids must be unique")
            skipped.append(f"{where}: duplicate {cfg.id_field} '{docid}' (same text), row skipped")
            continue
        seen[docid] = (number, text)
        source = row.get("source")
        documents.append((docid, text, source if isinstance(source, str) else ""))
    for line in skipped:
        console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    if not documents:
        raise MgaError(f"{corpus_path}: no usable documents (field '{cfg.text_field}'; {len(skipped)} rows skipped)")
    if cfg.sample_size is not None and cfg.sample_size < len(documents):
        keep = set(random.Random(seed).sample(range(len(documents)), cfg.sample_size))
        documents = [d for i, d in enumerate(documents) if i in keep]
    count = token_counter(cfg.tokenizer)
    rows = [
        chunk_row(docid, chunk_id, chunk, source)
        for docid, text, source in documents
        for chunk_id, chunk in enumerate(split_document(text, cfg.chunk_tokens, count))
    ]
    write_rows(out_path, rows)
    console.print(
        f"chunked {len(documents)} documents into {len(rows)} chunks of <= {cfg.chunk_tokens} tokens "
        f"({len(skipped)} rows skipped) -> {out_path}",
        markup=False,
        highlight=False,
    )
    return out_path
