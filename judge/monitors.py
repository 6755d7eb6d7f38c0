"""Corpus quality monitors: a rewrite measured against its source, and a document's rewrites against each other.

The expanded corpus goes into pretraining runs that cost far more than the expansion, and the method's own
risk is collapse (the paper's Figures 5 and 7): Strict prompts barely change the source, Relaxed ones drift
away, and validation loss does not show either. These figures say what a rewrite really added.

Per rewrite (`rewrite_monitors`, stored in the row's `meta.monitors`):
- copy rate: share of the rewrite's word 8-grams found in the source (1.0 = verbatim copy);
- longest copied span: the longest run of words the rewrite shares with the source, with its character
  offsets in the rewrite, so a report can highlight it;
- length ratio: rewrite words / source words;
- output language of the rewrite and of the source (py3langid, codes as the language packs': en, zh, ja).

Words are runs of letters and digits; in Chinese and Japanese, where no space separates words, each CJK
character is a word, so the same n-gram figures apply to every pack.

Per document (`document_diversity`): mean pairwise cosine similarity of its rewrites' MiniLM embeddings (the
heuristic judge's loader, `mga.judge.heuristic.embed`), diversity = 1 - that mean, and distinct-2 (distinct
word 2-grams / all word 2-grams over the document's rewrites).

Across a corpus: near-duplicate rewrites (`NearDuplicateIndex`, MinHash LSH from `datasketch`, made for one
machine; datatrove's dedup stages do the same at cluster scale on its Slurm and Ray executors) and benchmark
contamination (`BenchmarkIndex`, word 13-gram overlap with eval sets given as files, as GPT-3 and datatrove
decontaminate).

Memory: the MinHash index keeps, per inserted rewrite, its key, one hash per LSH band and its 128 hash
values (for the exact Jaccard check of LSH candidates); it grows linearly with the number of rewrites, not
with their length. Peak measured with tracemalloc by bench/monitors_cost.py: about 4 KB per rewrite (40.1 MB
at 10,000 rewrites, 418.8 MB at 100,000), so 10M rewrites need ~42 GB: near-duplicates are looked for within
one `mga expand` shard (`--num-shards` bounds the index), or move to datatrove's stages beyond that.
The benchmark index holds one 64-bit hash per distinct benchmark 13-gram, whatever the corpus' size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError

COPY_N = 8  # long enough that a shared 8-gram is copying, not a common phrase
CONTAMINATION_N = 13  # GPT-3's and datatrove's decontamination n-gram
SHINGLE_N = 5  # MinHash shingles: word 5-grams
NUM_PERM = 128

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(lower-cased word, start, end) for each word of `text` (a CJK character is a word)."""
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def words(text: str) -> list[str]:
    return [w for w, _, _ in word_spans(text)]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def copy_rate(source: str, rewrite: str, n: int = COPY_N) -> float:
    """Share of the rewrite's word n-grams that stand in the source. A rewrite shorter than n words counts
    as one n-gram of its own length (a short verbatim excerpt is still a copy)."""
    rw, src = words(rewrite), words(source)
    if not rw:
        return 0.0
    n = min(n, len(rw))
    grams = ngrams(rw, n)
    have = set(ngrams(src, n))
    return sum(g in have for g in grams) / len(grams)


def longest_copy(source: str, rewrite: str) -> dict[str, int]:
    """The longest run of words the rewrite shares with the source: its length in words and its character
    offsets in the rewrite (`start`, `end`; 0, 0 when nothing is shared). difflib finds it exactly."""
    spans = word_spans(rewrite)
    rw = [w for w, _, _ in spans]
    src = words(source)
    match = SequenceMatcher(None, src, rw, autojunk=False).find_longest_match(0, len(src), 0, len(rw))
    if match.size == 0:
        return {"words": 0, "start": 0, "end": 0}
    return {"words": match.size, "start": spans[match.b][1], "end": spans[match.b + match.size - 1][2]}


def copied_spans(source: str, rewrite: str, n: int = COPY_N) -> list[tuple[int, int]]:
    """Character ranges of the rewrite made of words the copy rate counts as copied (covered by a word n-gram
    that stands in the source), merged into runs: what a report highlights."""
    spans = word_spans(rewrite)
    if not spans:
        return []
    n = min(n, len(spans))
    have = set(ngrams(words(source), n))
    covered = [False] * len(spans)
    for i, gram in enumerate(ngrams([w for w, _, _ in spans], n)):
        if gram in have:
            covered[i : i + n] = [True] * n
    runs: list[tuple[int, int]] = []
    for i, copied in enumerate(covered):
        if copied:
            start = runs.pop()[0] if runs and i and covered[i - 1] else spans[i][1]
            runs.append((start, spans[i][2]))
    return runs


def length_ratio(source: str, rewrite: str) -> float:
    """Rewrite words / source words (the paper's expansion counts tokens; words need no tokenizer)."""
    n = len(words(source))
    return len(words(rewrite)) / n if n else 0.0


@cache
def _identifier():
    """py3langid: the maintained fork of langid.py; its model ships inside the wheel (nothing downloads at run
    time), it runs on numpy alone, and its codes are ISO 639-1 like the language packs'."""
    try:
        import py3langid
    except ImportError as e:
        raise MgaError(f"the language monitor needs py3langid ({e})") from None
    return py3langid


def language_of(text: str) -> str | None:
    """The language code of `text` (en, zh, ja, ...), None for a text without words."""
    if not words(text):
        return None
    return _identifier().classify(text)[0]


def rewrite_monitors(source: str, rewrite: str) -> dict[str, Any]:
    """Every per-rewrite figure, as stored in a row's `meta.monitors`; its document's `diversity` and
    `distinct_2` stay None until the filter measures the document's rewrites together."""
    return {
        "copy_rate": round(copy_rate(source, rewrite), 4),
        "longest_copy": longest_copy(source, rewrite),
        "length_ratio": round(length_ratio(source, rewrite), 4),
        "language": language_of(rewrite),
        "source_language": language_of(source),
        "diversity": None,
        "distinct_2": None,
    }


def monitors_of(row: dict[str, Any]) -> dict[str, Any]:
    """A rewrite row's figures: those stored in `meta.monitors`, else computed now (rows written before the
    monitors existed)."""
    stored = (row.get("meta") or {}).get("monitors")
    return stored if stored else rewrite_monitors(row["meta"]["raw_text"], row.get("content_split") or "")


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams over the texts (1.0: no n-gram repeats)."""
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def document_diversity(rewrites: Sequence[str]) -> dict[str, float | None]:
    """How different a document's rewrites are from each other: mean pairwise MiniLM cosine similarity,
    diversity = 1 - it, and distinct-2. With fewer than two rewrites there is no pair: similarity and
    diversity are None."""
    texts = [t for t in rewrites if t.strip()]
    out: dict[str, float | None] = {"mean_similarity": None, "diversity": None, "distinct_2": round(distinct_n(texts), 4)}
    if len(texts) < 2:
        return out
    from mga.judge.heuristic import embed

    vectors = embed(texts)
    sims = [float(vectors[i] @ vectors[j]) for i, j in combinations(range(len(texts)), 2)]
    mean = sum(sims) / len(sims)
    out["mean_similarity"] = round(mean, 4)
    out["diversity"] = round(1.0 - mean, 4)
    return out


class NearDuplicateIndex:
    """Near-duplicate rewrites across a corpus: MinHash of word 5-gram shingles in a datasketch MinHashLSH.

    `check_and_add(key, text)` returns the key of an earlier rewrite whose estimated Jaccard similarity
    reaches `threshold`, or None (and then indexes this one): the first of a group is kept, the others flagged.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM):
        from datasketch import MinHash, MinHashLSH

        self.num_perm = num_perm
        template = MinHash(num_perm=num_perm)
        self.permutations, self.scheme = template.permutations, template.scheme  # drawn once, shared by all
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.threshold = threshold
        self.minhashes: dict[str, Any] = {}

    def minhash(self, text: str):
        from datasketch import LeanMinHash, MinHash

        tokens = words(text)
        shingles = ngrams(tokens, min(SHINGLE_N, len(tokens))) if tokens else []
        m = MinHash(num_perm=self.num_perm, permutations=self.permutations, scheme=self.scheme)
        m.update_batch([" ".join(s).encode("utf-8") for s in shingles])
        return LeanMinHash(m)  # hash values only: what the index and the Jaccard check need

    def check_and_add(self, key: str, text: str) -> str | None:
        m = self.minhash(text)
        for other in self.lsh.query(m):  # LSH candidates; confirm with the estimated Jaccard itself
            if self.minhashes[other].jaccard(m) >= self.threshold:
                return other
        self.lsh.insert(key, m)
        self.minhashes[key] = m
        return None


def near_duplicates(texts: dict[str, str], threshold: float = 0.8) -> dict[str, str]:
    """key -> key of the earlier text it nearly duplicates, for every flagged text (in the dict's order)."""
    index = NearDuplicateIndex(threshold)
    return {key: dup for key, text in texts.items() if (dup := index.check_and_add(key, text)) is not None}


def _gram_hash(gram: tuple[str, ...]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(gram).encode("utf-8"), digest_size=8).digest(), "little")


class BenchmarkIndex:
    """Word 13-grams of eval sets, to find rewrites that contain benchmark text (contamination).

    Each file is read with the toolkit's row reader (.jsonl/.parquet rows with a `text` field; a `question`
    and `answer`, when present, count too). A rewrite sharing `min_ngrams` 13-grams with them is contaminated.
    """

    def __init__(self, paths: Sequence[str | Path], n: int = CONTAMINATION_N):
        from mga.distill.core.io import iter_rows

        self.n = n
        self.grams: dict[int, str] = {}
        for path in paths:
            if not Path(path).is_file():
                raise MgaError(f"benchmark file not found: {path}")
            for i, row in enumerate(iter_rows(path)):
                text = " ".join(str(row[k]) for k in ("text", "question", "answer") if row.get(k))
                where = f"{Path(path).name}:{row.get('id', i)}"
                for gram in ngrams(words(text), n):
                    self.grams.setdefault(_gram_hash(gram), where)

    def matches(self, text: str) -> dict[str, Any]:
        """How many of the text's 13-grams stand in a benchmark, and the first benchmark item they come from."""
        hits = [self.grams[h] for h in map(_gram_hash, ngrams(words(text), self.n)) if h in self.grams]
        return {"ngrams": len(hits), "item": hits[0] if hits else None}


def measured_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rewrite rows the monitors measure (ok, not empty, not a control, with their source or their
    figures), each with its figures in `meta.monitors` (computed here, once, when not stored)."""
    from mga.distill.core.schema import OK, is_control

    return [row if row["meta"].get("monitors") else {**row, "meta": {**row["meta"], "monitors": monitors_of(row)}}
            for row in rows if row.get("status", OK) == OK and not is_control(row)
            and (row.get("content_split") or "").strip() and ("monitors" in row["meta"] or "raw_text" in row["meta"])]


def quality_summary(rows: Iterable[dict[str, Any]], per_document: bool = True) -> dict[str, Any]:
    """The monitors aggregated over a set of rewrite rows (one prompt variant, one (genre, audience) family):
    means of the per-rewrite figures, the mean diversity of their documents, the near-duplicate share within
    the set. Failed, empty and control rows, and rows without their source, are left out; `rewrites` says how
    many were measured. Diversity and distinct-2 compare a document's rewrites with each other, so they are
    left None with `per_document=False` (a (genre, audience) family holds one rewrite per document and line).
    Two private keys say which rows the figures come from, for a report's samples: `_documents` (chunk key ->
    `document_diversity`) and `_near_duplicate_of` (rewrite key -> the key of the earlier rewrite it nearly
    duplicates)."""
    from mga.distill.core.schema import chunk_key, rewrite_key

    measured = measured_rows(rows)
    n = len(measured)
    out: dict[str, Any] = {"rewrites": n, "copy_rate": None, "longest_copy_words": None, "length_ratio": None,
                           "language_kept": None, "diversity": None, "distinct_2": None, "near_duplicate_share": None}
    if not n:
        return out
    figures = [r["meta"]["monitors"] for r in measured]
    out["copy_rate"] = round(sum(f["copy_rate"] for f in figures) / n, 4)
    out["longest_copy_words"] = round(sum(f["longest_copy"]["words"] for f in figures) / n, 2)
    out["length_ratio"] = round(sum(f["length_ratio"] for f in figures) / n, 4)
    out["language_kept"] = round(sum(f["language"] == f["source_language"] for f in figures) / n, 4)
    documents: dict[str, list[str]] = {}
    for row in measured:
        documents.setdefault(chunk_key(row), []).append(row["content_split"])
    out["_documents"] = {key: document_diversity(texts) for key, texts in documents.items()} if per_document else {}
    if per_document:
        per_doc = list(out["_documents"].values())
        diversities = [d["diversity"] for d in per_doc if d["diversity"] is not None]
        out["diversity"] = round(sum(diversities) / len(diversities), 4) if diversities else None
        out["distinct_2"] = round(sum(d["distinct_2"] for d in per_doc) / len(per_doc), 4)
    out["_near_duplicate_of"] = near_duplicates({rewrite_key(r): r["content_split"] for r in measured})
    out["near_duplicate_share"] = round(len(out["_near_duplicate_of"]) / n, 4)
    return out
