"""The row schemas every stage reads and writes (compatible with the released MGACorpus schema).

chunk (corpus after chunking):
    {"meta": {"docid", "chunk_id", "source", "raw_text"}}
pairs (stage 1 labels):
    {"meta": {...chunk meta}, "pairs": [{"genre", "audience"}, ...], "status": "ok" | "failed",
     "reason": str | None, "model", "finish_reason", "prompt_tokens", "completion_tokens", "raw_output"}
rewrite (stage 2 labels; `content_split` is the rewrite, as in MGACorpus):
    {"meta": {...chunk meta, "genre", "audience", "pair_id"}, "content_split": str, "variant",
     "status": "ok" | "failed" | "truncated" | "empty", "reason", "model", "finish_reason",
     "prompt_tokens", "completion_tokens"}
judged (a rewrite row plus the judge's verdict):
    {..., "judge": {"score": 1..5 | None, "status": "scored" | "unscored", "reason", "analysis",
                    "backend": "llm" | "heuristic", "model", "weighted_score": float | None}}
control (a judged row that tests the judge, never a model's rewrite; see mga.judge.controls):
    a judged row whose `meta.pair_id` is "control:<kind>", plus {"control": {"kind", "expect": "high" | "low",
    "donor"}}; every table, filter and SFT builder leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mga.distill.core.errors import MgaError

OK = "ok"
TOOL_MODELS = ("pairs", "rewrite")  # the two tool models (SLM-1: stage 1 pairs, SLM-2: stage 2 rewrites)


def chunk_row(docid: str, chunk_id: int, text: str, source: str = "") -> dict[str, Any]:
    return {"meta": {"docid": str(docid), "chunk_id": int(chunk_id), "source": source, "raw_text": text}}


def chunk_key(row: dict[str, Any]) -> str:
    """Identity of a document chunk: what stage-1 rows are keyed and resumed by."""
    return f"{row['meta']['docid']}#{row['meta']['chunk_id']}"


def rewrite_key(row: dict[str, Any]) -> str:
    """Identity of one (chunk, pair, variant) rewrite: what stage-2 and judged rows are keyed by."""
    meta = row["meta"]
    return f"{meta['docid']}#{meta['chunk_id']}#{meta['pair_id']}#{row.get('variant', 'base')}"


def item_key(row: dict[str, Any]) -> str:
    """Identity of one eval item, the same for every model and prompt variant that answers it: (chunk, pair).

    Reports compare models only on equal sets of these keys, and pair their answers by them."""
    meta = row.get("meta") or {}
    if "docid" not in meta or "pair_id" not in meta:
        raise MgaError("a judged row has no meta.docid / meta.pair_id: its eval item cannot be matched across models")
    return f"{meta['docid']}#{meta.get('chunk_id', 0)}#{meta['pair_id']}"


# A truncated rewrite is still judged (Limited Consistency does not penalise omissions), but stays marked
# `truncated`, so the filters keep it out of the SFT data; failed and empty rewrites count as unscored.
JUDGEABLE = (OK, "truncated")


def unjudgeable_reason(row: dict[str, Any]) -> str | None:
    """Why a rewrite row cannot be judged (it then counts as an unscored failure), or None."""
    status = row.get("status", OK)
    empty = not (row.get("content_split") or "").strip()
    if status not in JUDGEABLE or (empty and status != OK):
        return f"rewrite {status}: {row.get('reason')}"
    return "empty rewrite" if empty else None


def score_of(row: dict[str, Any]) -> int | None:
    """The judge's score of a judged row, None when unscored (which counts as a failure in reports)."""
    verdict = row.get("judge") or {}
    return verdict.get("score") if verdict.get("status") == "scored" else None


def verdict_problem(row: dict[str, Any]) -> str | None:
    """What is wrong with a judged row's verdict (a scored row whose score is not a whole number 1-5: NaN, 7,
    "4"), or None: a file read from disk is checked with this before any share is computed."""
    verdict = row.get("judge")
    if verdict is None:
        return None
    if not isinstance(verdict, dict):
        return f"`judge` must be an object, got {verdict!r}"
    if verdict.get("status") != "scored":
        return None
    score = verdict.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or score != score or score not in (1, 2, 3, 4, 5):
        return f"judge.score {score!r} is not a score 1-5"
    return None


def pair_meta(meta: dict[str, Any], pair_id: int, pair: dict[str, str]) -> dict[str, Any]:
    """The meta of the rewrite for pair `pair_id` of a chunk: one definition, since it feeds `rewrite_key`."""
    return {**meta, "genre": pair["genre"], "audience": pair["audience"], "pair_id": pair_id}


def rewrite_jobs(prow: dict[str, Any], variant: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(rewrite key, rewrite meta) for each pair of an ok pairs row, in pair order."""
    if prow.get("status") != OK:
        return
    for pair_id, pair in enumerate(prow["pairs"]):
        meta = pair_meta(prow["meta"], pair_id, pair)
        yield rewrite_key({"meta": meta, "variant": variant}), meta


def pairs_row(meta: dict[str, Any], pairs: list[dict[str, str]], *, status: str, reason: str | None, model: str,
              usage: dict[str, Any], raw_output: str | None, **extra: Any) -> dict[str, Any]:
    """A stage-1 row (schema above), whoever wrote it: the teacher, an SLM-1, or the reference set."""
    return {"meta": meta, "pairs": pairs, "status": status, "reason": reason, "model": model, **usage,
            "raw_output": raw_output, **extra}


def rewrite_row(meta: dict[str, Any], content: str, *, variant: str, status: str, reason: str | None, model: str,
                usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A stage-2 row (schema above; `content_split` is the rewrite), whoever wrote it."""
    return {"meta": meta, "content_split": content, "variant": variant, "status": status, "reason": reason,
            "model": model, **usage, **extra}


def is_control(row: dict[str, Any]) -> bool:
    """Whether a row is one of the judge's controls (never a model's rewrite: no table, filter or SFT data)."""
    return bool(row.get("control"))


# ---- the expanded corpus (MGACorpus) ----------------------------------------------------------------------------
# The released MGACorpus schema: meta.{chunk_id, docid, meta_extra, source, split, genre, audience, raw_text}
# and content_split; expansion adds meta.pair_id and the rewrite's provenance (variant, model, cleaning).

EXPANDED_SPLIT = "train"


def mgacorpus_arrow_schema():
    """The Arrow schema of an expanded row, so every Parquet shard has the same columns and types.

    `meta.monitors` holds the quality monitors' figures of the rewrite (mga.judge.monitors)."""
    import pyarrow as pa

    monitors = pa.struct([
        ("copy_rate", pa.float64()),
        ("longest_copy", pa.struct([("words", pa.int64()), ("start", pa.int64()), ("end", pa.int64())])),
        ("length_ratio", pa.float64()), ("language", pa.string()), ("source_language", pa.string()),
        ("diversity", pa.float64()), ("distinct_2", pa.float64()),
    ])
    meta = pa.struct([
        ("docid", pa.string()), ("chunk_id", pa.int64()), ("source", pa.string()), ("split", pa.string()),
        ("meta_extra", pa.string()), ("genre", pa.string()), ("audience", pa.string()), ("pair_id", pa.int64()),
        ("raw_text", pa.string()), ("monitors", monitors),
    ])
    cleaning = pa.struct([("removed_lines", pa.list_(pa.string())), ("keyword_coverage", pa.float64())])
    return pa.schema([
        ("meta", meta), ("content_split", pa.string()), ("variant", pa.string()), ("model", pa.string()),
        ("finish_reason", pa.string()), ("cleaning", cleaning),
    ])
