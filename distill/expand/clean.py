"""The expand step's last pass: clean the rewrites (the paper's step 10), write kept and rejected rows in
chunk and pair order, and count.

It walks `chunks.jsonl` once and fetches each chunk's current pairs row and each pair's current rewrite row
from the streams by content key (`todo`: one seek each; rows of another text, prompt, parameters or model
are never used), so memory holds one chunk's rows whatever the shard's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.diskindex import RowIndex
from mga.distill.core.schema import OK
from mga.distill.expand.output import AtomicJsonl, ParquetShards
from mga.distill.expand.rows import expanded_row, rejected_row
from mga.distill.expand.spec import ExpandSpec
from mga.distill.expand.todo import content_key, current_pairs, open_streams, pair_jobs


class _Tally:
    def __init__(self) -> None:
        self.n: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.quality: Counter[str] = Counter()  # sums and counts, so shards add up (card.quality_figures)
        self.last_docid: str | None = None

    def measure(self, row: dict[str, Any], reason: str | None) -> None:
        """Add a filtered rewrite's monitor figures (`meta.monitors`) to the sums."""
        figures = row["meta"].get("monitors")
        if not figures:
            return
        q = self.quality
        q["measured"] += 1
        q["copy_rate_sum"] += figures["copy_rate"]
        q["length_ratio_sum"] += figures["length_ratio"]
        q["language_kept"] += figures["language"] == figures["source_language"]
        if figures.get("diversity") is not None:
            q["with_diversity"] += 1
            q["diversity_sum"] += figures["diversity"]
            q["distinct_2_sum"] += figures["distinct_2"]
        q["near_duplicate"] += reason == "near_duplicate"
        q["contaminated"] += reason == "contaminated"
        q["high_copy_rate"] += reason == "high_copy_rate"


def _clean_chunk(prow: dict[str, Any] | None, rewrites: RowIndex, spec: ExpandSpec, cfg: Any, corpus: Any,
                 out: AtomicJsonl | ParquetShards, rejected: AtomicJsonl, tally: _Tally,
                 count_tokens: Callable[[str], int]) -> None:
    from mga.judge.filters import filter_row, with_diversity

    if prow is None:
        return
    n = tally.n
    n["pairs_ok" if prow.get("status") == OK else "pairs_failed"] += 1
    if prow.get("status") != OK:
        rejected.write(rejected_row(prow["meta"], "pairs", "pairs_invalid", prow.get("reason"),
                                    model=prow.get("model"), raw_output=prow.get("raw_output")))
        tally.reasons["pairs_invalid"] += 1
        return
    found = []
    for key, job in pair_jobs(prow, spec):
        row = rewrites.get(content_key(key, job.digest))
        if row is None:
            n["rewrites_missing"] += 1
            continue
        found.append(row)
    for row in with_diversity(found, cfg):  # the chunk's rewrites measured against each other
        n["rewrites"] += 1
        keep, reason, cleaned = filter_row(row, cfg, spec.language, corpus)
        record = cleaned["filter"]
        tally.measure(cleaned, reason)
        if keep:
            out.write(expanded_row(cleaned, record))
            n["expanded"] += 1
            n["cleaned_rows"] += bool(record["removed_lines"])
            n["tokens_out"] += count_tokens(cleaned["content_split"])
            continue
        tally.reasons[reason] += 1
        rejected.write(rejected_row(
            cleaned["meta"], "rewrite" if reason.startswith("rewrite_") else "clean", reason,
            record.get("detail") or row.get("reason"),
            content_split=row.get("content_split"), variant=row.get("variant"), model=row.get("model"),
            finish_reason=row.get("finish_reason"), keyword_coverage=record["keyword_coverage"]))


def clean_and_count(
    work_dir: Path,
    spec: ExpandSpec,
    out: AtomicJsonl | ParquetShards,
    *,
    min_keyword_coverage: float,
    count_tokens: Callable[[str], int],
    filter_cfg: Any = None,
) -> dict[str, Any]:
    """chunks.jsonl + pairs.jsonl + rewrites.jsonl -> kept rows into `out`, rejected.jsonl, and the counts.

    `filter_cfg` (a `FilterConfig`) sets the quality monitors' thresholds; `min_keyword_coverage` overrides its own."""
    from mga.judge.config import FilterConfig
    from mga.judge.filters import CorpusChecks

    cfg = (filter_cfg or FilterConfig()).model_copy(update={"min_keyword_coverage": min_keyword_coverage})
    corpus = CorpusChecks(cfg)
    tally = _Tally()
    n = tally.n
    rejected = AtomicJsonl(work_dir / "rejected.jsonl")
    try:
        with open_streams(work_dir) as (pairs, rewrites):
            for chunk, prow in current_pairs(work_dir / "chunks.jsonl", spec, pairs):
                docid = chunk["meta"]["docid"]
                n["documents"] += docid != tally.last_docid  # a document's chunks are consecutive
                tally.last_docid = docid
                n["chunks"] += 1
                n["tokens_in"] += count_tokens(chunk["meta"]["raw_text"])
                _clean_chunk(prow, rewrites, spec, cfg, corpus, out, rejected, tally, count_tokens)
        files = out.commit()
        rejected.commit()
    except BaseException:
        out.abort()
        rejected.abort()
        raise
    return {
        "documents": n["documents"],
        "chunks": n["chunks"],
        "pairs_ok": n["pairs_ok"],
        "pairs_failed": n["pairs_failed"],
        "rewrites": n["rewrites"],
        "rewrites_missing": n["rewrites_missing"],
        "expanded": n["expanded"],
        "rejected": rejected.rows,
        "rejected_by_reason": dict(sorted(tally.reasons.items())),
        "quality": {k: round(v, 6) for k, v in sorted(tally.quality.items())},
        "quality_thresholds": cfg.model_dump(include={"max_copy_rate", "min_diversity", "reject_language_change",
                                                      "near_duplicate_threshold", "benchmarks",
                                                      "contamination_min_ngrams"}),
        "cleaned_rows": n["cleaned_rows"],
        "tokens_in": n["tokens_in"],
        "tokens_out": n["tokens_out"],
        "expansion_factor": round(n["tokens_out"] / n["tokens_in"], 4) if n["tokens_in"] else 0.0,
        "output_files": files,
    }
