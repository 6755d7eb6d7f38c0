"""Corpus -> chunks: documents streamed from `mga.distill.label.documents`, long ones split, written as a stream.

A chunk holds at most `chunk_tokens` tokens of the named tokenizer (the paper caps prompts at 4,096 tokens).
Splits fall on paragraph boundaries; a paragraph longer than the cap is split on sentences, then lines, then
words. Tokens are counted by `mga.distill.core.tokens`: without a tokenizer, estimated from words and
punctuation (each CJK character counts as one), which overestimates BPE counts on ordinary prose, so chunks
stay under the cap of most tokenizers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.config import CorpusConfig
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_rows
from mga.distill.core.language import in_script, language_pack
from mga.distill.core.schema import chunk_row
from mga.distill.core.tokens import estimate_tokens, token_counter
from mga.distill.label.documents import Skipped, iter_documents

_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+|(?<=[。！？；])")
_WORDS = re.compile(r"\S+\s*")

Counter = Callable[[str], int]


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


def chunk_corpus(
    corpus: str | Path, out_path: Path, cfg: CorpusConfig, *, seed: int = 0, shard_index: int = 0,
    num_shards: int = 1, limit: int | None = None, language: str | None = None,
) -> Path:
    """Write the chunks (`schema.chunk_row` rows) of a corpus (a file, folder, glob or saved dataset), or of
    one shard of it, streaming; bad rows are warned about and skipped. Documents not in the script of
    `language` (the prompts') get one warning with their count. Returns `out_path`."""
    out_path = Path(out_path)
    skipped = Skipped()
    count = token_counter(cfg.tokenizer)
    tally = {"documents": 0, "chunks": 0, "other_language": 0}
    pack = language_pack(language) if language is not None else None

    def rows() -> Iterator[dict[str, Any]]:
        for doc in iter_documents(corpus, cfg, skipped, seed=seed, shard_index=shard_index, num_shards=num_shards,
                                  limit=limit, scratch=out_path.parent):
            tally["documents"] += 1
            tally["other_language"] += pack is not None and not in_script(doc.text, pack.scripts)
            for chunk_id, chunk in enumerate(split_document(doc.text, cfg.chunk_tokens, count)):
                tally["chunks"] += 1
                yield chunk_row(doc.docid, chunk_id, chunk, doc.source)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_rows(out_path, rows())
    skipped.close()
    if not tally["documents"] and num_shards == 1:
        out_path.unlink(missing_ok=True)
        raise MgaError(f"{corpus}: no usable documents (field '{cfg.text_field}'; {skipped.count} rows skipped)")
    if pack is not None and tally["other_language"]:
        console.print(f"warning: {tally['other_language']} of {tally['documents']} documents are not mostly in the "
                      f"script of {pack.display_name} ({', '.join(pack.scripts)}), the language of the prompts "
                      f"(language: {pack.code}); they are labeled with these prompts all the same: set `language:` "
                      "to the documents' language, or leave them out of the corpus", markup=False, highlight=False,
                      soft_wrap=True)
    console.print(
        f"chunked {tally['documents']} documents into {tally['chunks']} chunks of <= {cfg.chunk_tokens} tokens "
        f"({skipped.count} rows skipped) -> {out_path}",
        markup=False,
        highlight=False,
    )
    return out_path
