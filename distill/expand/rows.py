"""The rows the expand step derives, in one place for the local and the Ray executor and the cleaning pass.

pairs and rewrite rows are built by the labeling stages' builders (`mga.distill.label.rows`); here are the
expanded row (the MGACorpus schema, `mgacorpus_arrow_schema`) and the rejected row (the source row plus
`reject`).
"""

from __future__ import annotations

import json
from typing import Any

from mga.distill.core.schema import EXPANDED_SPLIT


def expanded_row(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A kept rewrite in the MGACorpus schema (`meta.*` + `content_split`) plus its provenance."""
    meta = row["meta"]
    extra = {k: v for k, v in meta.items() if k not in _META_FIELDS}
    return {
        "meta": {
            "docid": meta["docid"],
            "chunk_id": meta["chunk_id"],
            "source": meta.get("source", ""),
            "split": EXPANDED_SPLIT,
            "meta_extra": json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else "",
            "genre": meta["genre"],
            "audience": meta["audience"],
            "pair_id": meta["pair_id"],
            "raw_text": meta["raw_text"],
            "monitors": meta.get("monitors"),
        },
        "content_split": row["content_split"],
        "variant": row.get("variant"),
        "model": row.get("model"),
        "finish_reason": row.get("finish_reason"),
        "cleaning": {"removed_lines": record["removed_lines"], "keyword_coverage": record["keyword_coverage"]},
    }


_META_FIELDS = ("docid", "chunk_id", "source", "split", "meta_extra", "genre", "audience", "pair_id", "raw_text",
                "monitors")


def rejected_row(meta: dict[str, Any], stage: str, reason: str, detail: str | None, **extra: Any) -> dict[str, Any]:
    return {"meta": meta, "reject": {"stage": stage, "reason": reason, "detail": detail}, **extra}
