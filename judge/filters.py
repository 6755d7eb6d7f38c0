"""Filters between the judge and training (and after bulk expansion): each returns (keep, reason).

Order for one row: a judge's control row (`mga.judge.controls`) is always rejected (`judge_control`); the
rewrite must have been generated (status ok); if the row is judged, its score must reach `min_score`
(unscored rows are rejected, as the paper counts them as failures); boilerplate
lines are stripped from `content_split` and recorded; an empty remainder is rejected; finally the
rewrite must be in its source's language (`language_changed`; figures of `mga.judge.monitors`, stored in
`meta.monitors`) and keep `min_keyword_coverage` of the original's keywords. Then the other quality
monitors: at most `max_copy_rate` copied from the source (`high_copy_rate`), no benchmark 13-gram (`contaminated`),
a document whose rewrites differ enough from each other (`low_diversity`), and last no near-duplicate of an
earlier kept rewrite (`near_duplicate`; last, so only kept rewrites enter the index). Unjudged rewrite rows
(as `mga expand` produces) go through the same path without the score check.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import JsonlAppender, iter_rows
from mga.distill.core.language import boilerplate_patterns_of, pack_dir
from mga.distill.core.schema import OK, chunk_key, is_control, rewrite_key, score_of
from mga.judge.config import FilterConfig
from mga.judge.keywords import keyword_coverage
from mga.judge.monitors import (
    BenchmarkIndex,
    NearDuplicateIndex,
    document_diversity,
    monitors_of,
    rewrite_monitors,
)

__all__ = [
    "boilerplate_patterns",
    "CorpusChecks",
    "clean_rewrite",
    "coverage_filter",
    "filter_file",
    "filter_row",
    "keyword_coverage",
    "score_filter",
]

# skipped before a pattern is tried: indentation, markdown emphasis/headings/quotes, brackets, list markers
_LINE_PREFIX = re.compile(r"^[\s*_#>`~\-•\[\(（【「]*")


@cache
def _language_patterns(language: str) -> tuple[str, ...]:
    return tuple(boilerplate_patterns_of(pack_dir(language)))


@cache
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as e:
            raise MgaError(f"filter.boilerplate: invalid pattern {pattern!r}: {e}") from None
    return tuple(compiled)


def boilerplate_patterns(language: str = "en", patterns: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The given patterns, or the language's bundled list (data/prompts/<lang>/boilerplate.yaml)."""
    return tuple(patterns) if patterns is not None else _language_patterns(language)


def clean_rewrite(
    text: str,
    language: str = "en",
    patterns: list[str] | tuple[str, ...] | None = None,
    original: str | None = None,
) -> tuple[str, list[str]]:
    """The text without its boilerplate lines, and the removed lines (stripped).

    A line that also stands in the `original` is content carried over (documents say "Note: ..." too), not
    boilerplate added by the rewriting model, so it is kept.
    """
    compiled = _compile(boilerplate_patterns(language, patterns))
    source = {" ".join(line.split()) for line in (original or "").splitlines() if line.strip()}
    kept, removed = [], []
    for line in text.splitlines():
        body = _LINE_PREFIX.sub("", line)
        if body and " ".join(line.split()) not in source and any(p.match(body) for p in compiled):
            removed.append(line.strip())
        else:
            kept.append(line)
    if not removed:
        return text, []
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip(), removed


def score_filter(row: dict[str, Any], min_score: int) -> tuple[bool, str | None]:
    """Keep judged rows scoring at least `min_score`; unscored rows are rejected."""
    score = score_of(row)
    if score is None:
        return False, "unscored"
    if score < min_score:
        return False, f"score_below_{min_score}"
    return True, None


def coverage_filter(row: dict[str, Any], min_coverage: float, language: str = "en") -> tuple[bool, str | None]:
    coverage = keyword_coverage(row["meta"]["raw_text"], row.get("content_split") or "", language)
    return (True, None) if coverage >= min_coverage else (False, "low_keyword_coverage")


class CorpusChecks:
    """What the corpus-level filters remember across rows: the near-duplicate index of the rewrites kept so far
    and the benchmarks' 13-grams. One per filtered corpus (or `mga expand` shard)."""

    def __init__(self, cfg: FilterConfig):
        self.near = NearDuplicateIndex(cfg.near_duplicate_threshold) if cfg.near_duplicate_threshold else None
        self.benchmarks = BenchmarkIndex(cfg.benchmarks) if cfg.benchmarks else None


def with_diversity(rows: list[dict[str, Any]], cfg: FilterConfig) -> list[dict[str, Any]]:
    """The rows of one document (one chunk, one variant) with the document's diversity in `meta.monitors`
    (`diversity`, `distinct_2`); rows are copied, failed ones left as they are. Off when `min_diversity` is 0."""
    if not cfg.min_diversity:
        return rows
    ok = [i for i, r in enumerate(rows) if r.get("status", OK) == OK and not is_control(r)
          and (r.get("content_split") or "").strip()]
    figures = document_diversity([rows[i]["content_split"] for i in ok])
    out = list(rows)
    for i in ok:
        meta = dict(out[i]["meta"])
        meta["monitors"] = {**monitors_of(out[i]), "diversity": figures["diversity"], "distinct_2": figures["distinct_2"]}
        out[i] = {**out[i], "meta": meta}
    return out


def _monitor_reason(row: dict[str, Any], text: str, cfg: FilterConfig,
                    corpus: CorpusChecks | None) -> tuple[str | None, str | None]:
    """(reason, detail) of the first quality monitor the rewrite fails, (None, None) when it passes them all."""
    figures = row["meta"]["monitors"]
    if figures["copy_rate"] > cfg.max_copy_rate:
        return "high_copy_rate", f"copy rate {figures['copy_rate']:.2f} > {cfg.max_copy_rate}"
    if corpus and corpus.benchmarks:
        hit = corpus.benchmarks.matches(text)
        if hit["ngrams"] >= cfg.contamination_min_ngrams:
            return "contaminated", f"{hit['ngrams']} word 13-grams of {hit['item']}"
    diversity = figures.get("diversity")
    if diversity is not None and diversity < cfg.min_diversity:
        return "low_diversity", f"document diversity {diversity:.2f} < {cfg.min_diversity}"
    if corpus and corpus.near and (other := corpus.near.check_and_add(rewrite_key(row), text)):
        return "near_duplicate", f"near-duplicate of {other}"
    return None, None


def filter_row(
    row: dict[str, Any], cfg: FilterConfig, language: str = "en", corpus: CorpusChecks | None = None
) -> tuple[bool, str | None, dict[str, Any]]:
    """(keep, reason, row with the cleaned rewrite, its `meta.monitors` and a `filter` record). Without
    `corpus` the corpus-level checks (near-duplicates, contamination) are skipped."""
    row = dict(row)
    record: dict[str, Any] = {"keep": False, "reason": None, "removed_lines": [], "keyword_coverage": None,
                              "detail": None}
    row["filter"] = record
    if is_control(row):  # tests the judge; no model wrote it
        record["reason"] = "judge_control"
        return False, record["reason"], row
    if row.get("status", OK) != OK:
        record["reason"] = f"rewrite_{row.get('status')}"
        return False, record["reason"], row
    if "judge" in row:
        keep, reason = score_filter(row, cfg.min_score)
        if not keep:
            record["reason"] = reason
            return False, reason, row
    text, removed = clean_rewrite(row.get("content_split") or "", language, cfg.boilerplate, row["meta"]["raw_text"])
    if removed:
        row["raw_content_split"] = row.get("content_split")
        row["content_split"] = text
        record["removed_lines"] = removed
    if not text.strip():
        record["reason"] = "empty_after_cleaning"
        return False, record["reason"], row
    figures = monitors_of(row)
    if removed:  # measure what is kept, not the boilerplate the rewriting model added
        figures = {**rewrite_monitors(row["meta"]["raw_text"], text), "diversity": figures.get("diversity"),
                   "distinct_2": figures.get("distinct_2")}
    row["meta"] = {**row["meta"], "monitors": figures}
    if cfg.reject_language_change and None not in (figures["language"], figures["source_language"]) \
            and figures["language"] != figures["source_language"]:  # before coverage: no keyword survives it
        record["reason"], record["detail"] = "language_changed", f"{figures['source_language']} -> {figures['language']}"
        return False, record["reason"], row
    coverage = keyword_coverage(row["meta"]["raw_text"], text, language)
    record["keyword_coverage"] = round(coverage, 4)
    if coverage < cfg.min_keyword_coverage:
        record["reason"] = "low_keyword_coverage"
        return False, record["reason"], row
    reason, record["detail"] = _monitor_reason(row, text, cfg, corpus)
    if reason:
        record["reason"] = reason
        return False, reason, row
    record["keep"] = True
    return True, None, row


def filter_file(
    in_path: str | Path,
    kept_path: str | Path,
    rejected_path: str | Path,
    cfg: FilterConfig | None = None,
    *,
    language: str = "en",
) -> dict[str, int]:
    """Split rows into kept and rejected JSONL files; returns counts: `kept`, `cleaned`, one per reason.

    Rows are read whole, so that each document's rewrites (per variant) are measured against each other."""
    cfg = cfg or FilterConfig()
    for path in (kept_path, rejected_path):
        if Path(path).suffix != ".jsonl":
            raise MgaError(f"{path}: filter outputs are .jsonl files")
        Path(path).unlink(missing_ok=True)
    counts: Counter[str] = Counter()
    corpus = CorpusChecks(cfg)
    documents: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in iter_rows(in_path):
        documents.setdefault((chunk_key(row), row.get("variant") or "base"), []).append(row)
    with JsonlAppender(kept_path) as kept, JsonlAppender(rejected_path) as rejected:
        for row in (r for rows in documents.values() for r in with_diversity(rows, cfg)):
            keep, reason, row = filter_row(row, cfg, language, corpus)
            counts["cleaned"] += bool(row["filter"]["removed_lines"])
            counts["kept" if keep else reason] += 1
            (kept if keep else rejected).write(row)
    return dict(counts)
