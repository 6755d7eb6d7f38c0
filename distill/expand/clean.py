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
        self.last_docid: str | None = None


def _clean_chunk(prow: dict[str, Any] | None, rewrites: RowIndex, spec: ExpandSpec, cfg: Any,
                 out: AtomicJsonl | ParquetShards, rejected: AtomicJsonl, tally: _Tally,
                 count_tokens: Callable[[str], int]) -> None:
    from mga.judge.filters import filter_row

    if prow is None:
        return
    n = tally.n
    n["pairs_ok" if prow.get("status") == OK else "pairs_failed"] += 1
    if prow.get("status") != OK:
        rejected.write(rejected_row(prow["meta"], "pairs", "pairs_invalid", prow.get("reason"),
                                    model=prow.get("model"), raw_output=prow.get("raw_output")))
        tally.reasons["pairs_invalid"] += 1
        return
    for key, job in pair_jobs(prow, spec):
        row = rewrites.get(content_key(key, job.digest))
        if row is None:
            n["rewrites_missing"] += 1
            continue
        n["rewrites"] += 1
        keep, reason, cleaned = filter_row(row, cfg, spec.language)
        record = cleaned["filter"]
        if keep:
            out.write(expanded_row(cleaned, record))
            n["expanded"] += 1
            n["cleaned_rows"] += bool(record["removed_lines"])
            n["tokens_out"] += count_tokens(cleaned["content_split"])
            continue
        tally.reasons[reason] += 1
        rejected.write(rejected_row(
            row["meta"], "rewrite" if reason.startswith("rewrite_") else "clean", reason, row.get("reason"),
            content_split=row.get("content_split"), variant=row.get("variant"), model=row.get("model"),
            finish_reason=row.get("finish_reason"), keyword_coverage=record["keyword_coverage"]))


def clean_and_count(
    work_dir: Path,
    spec: ExpandSpec,
    out: AtomicJsonl | ParquetShards,
    *,
    min_keyword_coverage: float,
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    """chunks.jsonl + pairs.jsonl + rewrites.jsonl -> kept rows into `out`, rejected.jsonl, and the counts."""
    from mga.judge.config import FilterConfig

    cfg = FilterConfig(min_keyword_coverage=min_keyword_coverage)
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
                _clean_chunk(prow, rewrites, spec, cfg, out, rejected, tally, count_tokens)
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
        "cleaned_rows": n["cleaned_rows"],
        "tokens_in": n["tokens_in"],
        "tokens_out": n["tokens_out"],
        "expansion_factor": round(n["tokens_out"] / n["tokens_in"], 4) if n["tokens_in"] else 0.0,
        "output_files": files,
    }
