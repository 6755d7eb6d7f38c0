"""`mga expand`: the production step of MGA — expand a corpus with the two tool models.

Per chunk of a document, one SLM-1 call proposes `num_pairs` (genre, audience) pairs and one SLM-2 call per
pair rewrites the chunk for it (the paper's step 9). The rewrites are then cleaned as in the paper's step 10:
boilerplate lines ("Note: ...", "The following is ...") are cut and rewrites that keep too few of the
original's keywords are dropped. Kept rows are written in the MGACorpus schema, dropped rows with their
reason, and the expansion statistics (tokens in/out, the expansion factor the paper reports as 3.9x).

Work is split for job arrays by a stable hash of the document id (`shard_index` of `num_shards`), each
shard in its own folder. The local executor reuses the labeling stages (streaming, resumable by row key);
`executor="ray"` runs the same step on Ray Data (`mga.distill.expand.ray_executor`) and writes the same files.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.config import (
    VARIANTS,
    CorpusConfig,
)
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import done_keys, iter_rows, write_json, write_rows
from mga.distill.core.schema import OK, chunk_key, rewrite_key
from mga.distill.expand.spec import (
    BACKENDS,
    DEFAULT_MIN_KEYWORD_COVERAGE,
    EXECUTORS,
    REWRITE_ATTEMPTS,
    ExpandSpec,
    shard_dir,
    shard_of,
    token_counter,
)


def select_chunks(
    chunks: list[dict[str, Any]], *, shard_index: int = 0, num_shards: int = 1, limit: int | None = None
) -> list[dict[str, Any]]:
    """The chunks of this shard: of the first `limit` documents (corpus order), those hashing to the shard."""
    docids: list[str] = list(dict.fromkeys(row["meta"]["docid"] for row in chunks))
    if limit is not None:
        docids = docids[:limit]
    keep = {d for d in docids if shard_of(d, num_shards) == shard_index}
    return [row for row in chunks if row["meta"]["docid"] in keep]


def _check(
    *, backends: tuple[str, ...], executor: str, variant: str, num_pairs: int, shard_index: int, num_shards: int,
    limit: int | None, batch_size: int, max_new_tokens: int, temperature: float, min_keyword_coverage: float,
    workers: int | None,
) -> None:
    for backend in backends:
        if backend not in BACKENDS:
            raise MgaError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if executor not in EXECUTORS:
        raise MgaError(f"--executor {executor}: choose one of {', '.join(EXECUTORS)}")
    if variant not in VARIANTS:
        raise MgaError(f"--variant {variant}: choose one of {', '.join(VARIANTS)}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise MgaError(f"--shard-index {shard_index} --num-shards {num_shards}: need 0 <= index < shards")
    if num_pairs < 1:
        raise MgaError(f"--num-pairs {num_pairs}: need at least 1")
    if limit is not None and limit < 1:
        raise MgaError(f"--limit {limit}: need at least 1 document")
    if batch_size < 1 or max_new_tokens < 1:
        raise MgaError(f"--batch-size {batch_size} --max-new-tokens {max_new_tokens}: both need to be at least 1")
    if not 0.0 <= temperature <= 2.0:
        raise MgaError(f"--temperature {temperature}: need 0 <= temperature <= 2")
    if not 0.0 <= min_keyword_coverage <= 1.0:
        raise MgaError(f"--min-keyword-coverage {min_keyword_coverage}: need a share between 0 and 1")
    if workers is not None and workers < 1:
        raise MgaError(f"--workers {workers}: need at least 1")


# ---- cleaning and statistics ----------------------------------------------------------------------------------


def expanded_row(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A kept rewrite in the MGACorpus schema (`meta.*` + `content_split`) plus its provenance."""
    meta = row["meta"]
    return {
        "meta": {
            "docid": meta["docid"],
            "chunk_id": meta["chunk_id"],
            "source": meta.get("source", ""),
            "genre": meta["genre"],
            "audience": meta["audience"],
            "pair_id": meta["pair_id"],
            "raw_text": meta["raw_text"],
        },
        "content_split": row["content_split"],
        "variant": row.get("variant"),
        "model": row.get("model"),
        "finish_reason": row.get("finish_reason"),
        "cleaning": {"removed_lines": record["removed_lines"], "keyword_coverage": record["keyword_coverage"]},
    }


def _rejected(meta: dict[str, Any], stage: str, reason: str, detail: str | None, **extra: Any) -> dict[str, Any]:
    return {"meta": meta, "reject": {"stage": stage, "reason": reason, "detail": detail}, **extra}


def clean_and_count(
    work_dir: Path,
    chunks: list[dict[str, Any]],
    spec: ExpandSpec,
    *,
    min_keyword_coverage: float,
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    """pairs.jsonl + rewrites.jsonl -> expanded.jsonl, rejected.jsonl (chunk, pair order) and the counts."""
    from mga.judge.config import FilterConfig
    from mga.judge.filters import filter_row

    cfg = FilterConfig(min_keyword_coverage=min_keyword_coverage)
    order = {chunk_key(c): i for i, c in enumerate(chunks)}
    pairs = sorted(
        (r for r in iter_rows(work_dir / "pairs.jsonl") if chunk_key(r) in order), key=lambda r: order[chunk_key(r)]
    )
    rewrites = {
        rewrite_key(r): r
        for r in iter_rows(work_dir / "rewrites.jsonl")
        if r.get("variant") == spec.variant and chunk_key(r) in order
    }
    expanded: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    missing = 0
    for prow in pairs:
        if prow.get("status") != OK:
            rejected.append(
                _rejected(prow["meta"], "pairs", "pairs_invalid", prow.get("reason"),
                          model=prow.get("model"), raw_output=prow.get("raw_output"))
            )
            reasons["pairs_invalid"] += 1
            continue
        for pair_id, pair in enumerate(prow["pairs"]):
            meta = {**prow["meta"], "genre": pair["genre"], "audience": pair["audience"], "pair_id": pair_id}
            row = rewrites.get(rewrite_key({"meta": meta, "variant": spec.variant}))
            if row is None:
                missing += 1
                continue
            keep, reason, cleaned = filter_row(row, cfg, spec.language)
            record = cleaned["filter"]
            if keep:
                expanded.append(expanded_row(cleaned, record))
                continue
            reasons[reason] += 1
            rejected.append(
                _rejected(row["meta"], "rewrite" if reason.startswith("rewrite_") else "clean", reason,
                          row.get("reason"), content_split=row.get("content_split"), variant=row.get("variant"),
                          model=row.get("model"), finish_reason=row.get("finish_reason"),
                          keyword_coverage=record["keyword_coverage"])
            )
    write_rows(work_dir / "expanded.jsonl", expanded)
    write_rows(work_dir / "rejected.jsonl", rejected)
    tokens_in = sum(count_tokens(c["meta"]["raw_text"]) for c in chunks)
    tokens_out = sum(count_tokens(r["content_split"]) for r in expanded)
    pairs_ok = sum(r.get("status") == OK for r in pairs)
    return {
        "documents": len({c["meta"]["docid"] for c in chunks}),
        "chunks": len(chunks),
        "pairs_ok": pairs_ok,
        "pairs_failed": len(pairs) - pairs_ok,
        "rewrites": len(rewrites),
        "rewrites_missing": missing,
        "expanded": len(expanded),
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "cleaned_rows": sum(bool(r["cleaning"]["removed_lines"]) for r in expanded),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "expansion_factor": round(tokens_out / tokens_in, 4) if tokens_in else 0.0,
    }


def print_stats(stats: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"mga expand: {stats['out_dir']}", title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    rows = [
        ("documents", stats["documents"]),
        ("chunks", stats["chunks"]),
        ("pairs ok / failed", f"{stats['pairs_ok']} / {stats['pairs_failed']}"),
        ("rewrites generated", stats["rewrites"]),
        ("expanded rows (kept)", stats["expanded"]),
        ("rejected rows", stats["rejected"]),
        *((f"  rejected: {reason}", n) for reason, n in stats["rejected_by_reason"].items()),
        (f"tokens in ({stats['token_counter']})", f"{stats['tokens_in']:,}"),
        ("tokens out (kept rewrites)", f"{stats['tokens_out']:,}"),
        ("token expansion factor (paper: 3.9x)", f"{stats['expansion_factor']:.2f}x"),
        ("generated this run: pairs / rewrites", f"{stats['generated']['pairs']} / {stats['generated']['rewrites']}"),
        ("wall time", f"{stats['wall_s']:.1f} s ({stats['executor']})"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


# ---- the step ------------------------------------------------------------------------------------------------


def _chunks_of_shard(
    corpus: Path, work_dir: Path, corpus_cfg: CorpusConfig, *, shard_index: int, num_shards: int, limit: int | None
) -> list[dict[str, Any]]:
    """Chunk the corpus (deterministic, cheap next to generation) and keep this shard's chunks."""
    from mga.distill.label.chunk import chunk_corpus

    every = work_dir / ".chunks.all.jsonl"
    try:
        chunk_corpus(corpus, every, corpus_cfg)
        chunks = select_chunks(list(iter_rows(every)), shard_index=shard_index, num_shards=num_shards, limit=limit)
    finally:
        every.unlink(missing_ok=True)
    write_rows(work_dir / "chunks.jsonl", chunks)
    return chunks


def _run_local(work_dir: Path, spec: ExpandSpec) -> None:
    from mga.distill.label.labeling import label_pairs, label_rewrites

    pairs_gen = spec.generator("pairs", cache_path=work_dir / ".mga-cache.sqlite")
    label_pairs(
        work_dir / "chunks.jsonl", work_dir / "pairs.jsonl", pairs_gen, language=spec.language,
        num_pairs=spec.num_pairs, params=spec.params(), max_validation_attempts=spec.max_validation_attempts,
    )
    del pairs_gen  # free the pairs model before loading the rewrite model
    rewrite_gen = spec.generator("rewrite", cache_path=work_dir / ".mga-cache.sqlite")
    label_rewrites(
        work_dir / "pairs.jsonl", work_dir / "rewrites.jsonl", rewrite_gen, language=spec.language,
        variant=spec.variant, params=spec.params(), max_attempts=REWRITE_ATTEMPTS,
    )


def _row_counts(work_dir: Path) -> tuple[int, int]:
    """Pairs and rewrite rows already written: the difference over a run is what it generated."""
    return len(done_keys(work_dir / "pairs.jsonl", chunk_key)), len(done_keys(work_dir / "rewrites.jsonl", rewrite_key))


def expand_corpus(
    corpus: Path,
    out_dir: Path,
    *,
    pairs_model: str,
    rewrite_model: str,
    backend: str = "transformers",
    pairs_backend: str | None = None,
    rewrite_backend: str | None = None,
    executor: str = "local",
    language: str = "en",
    variant: str = "base",
    num_pairs: int = 5,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 8,
    max_new_tokens: int = 4096,
    temperature: float = 0.0,
    min_keyword_coverage: float = DEFAULT_MIN_KEYWORD_COVERAGE,
    base_url: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    limit: int | None = None,
    corpus_cfg: CorpusConfig | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Expand this shard of `corpus` into `out_dir` (or `out_dir/shard-i-of-n`); returns the statistics.

    Writes chunks.jsonl, pairs.jsonl, rewrites.jsonl (resumable intermediates), expanded.jsonl (MGACorpus
    schema), rejected.jsonl (rows with `reject.reason`) and stats.json. Rerunning a finished shard
    generates nothing and rewrites the same outputs.
    """
    pairs_backend, rewrite_backend = pairs_backend or backend, rewrite_backend or backend
    _check(backends=(pairs_backend, rewrite_backend), executor=executor, variant=variant, num_pairs=num_pairs,
           shard_index=shard_index, num_shards=num_shards, limit=limit, batch_size=batch_size,
           max_new_tokens=max_new_tokens, temperature=temperature, min_keyword_coverage=min_keyword_coverage,
           workers=workers)
    spec = ExpandSpec(
        pairs_model=pairs_model, rewrite_model=rewrite_model, pairs_backend=pairs_backend,
        rewrite_backend=rewrite_backend, language=language, variant=variant,
        num_pairs=num_pairs, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature,
        base_url=base_url,
    )
    for which, model in (("pairs", pairs_model), ("rewrite", rewrite_model)):
        if spec.backend(which) != "openai" and not Path(model).is_dir():
            raise MgaError(f"--{which}-model {model}: no such local checkpoint folder (backend "
                           f"{spec.backend(which)}); give a model folder, or --backend openai with a served model name")
    started = time.perf_counter()
    work_dir = shard_dir(Path(out_dir), shard_index, num_shards)
    work_dir.mkdir(parents=True, exist_ok=True)
    chunks = _chunks_of_shard(Path(corpus), work_dir, corpus_cfg or CorpusConfig(),
                              shard_index=shard_index, num_shards=num_shards, limit=limit)
    timings: dict[str, Any] | None = None
    before = _row_counts(work_dir)
    if not chunks:
        console.print(f"shard {shard_index} of {num_shards}: no documents hash to this shard", markup=False)
    elif executor == "ray":
        from mga.distill.expand.ray_executor import run_on_ray

        timings = run_on_ray(work_dir, chunks, spec, workers=workers, ray_address=ray_address)
    else:
        _run_local(work_dir, spec)
    for name in ("pairs.jsonl", "rewrites.jsonl"):
        if not (work_dir / name).exists():
            write_rows(work_dir / name, [])
    after = _row_counts(work_dir)
    count_tokens, counter_name = token_counter(spec)
    stats = clean_and_count(work_dir, chunks, spec, min_keyword_coverage=min_keyword_coverage,
                            count_tokens=count_tokens)
    wall = time.perf_counter() - started
    stats = {
        "out_dir": str(work_dir),
        "executor": executor,
        "pairs_backend": pairs_backend,
        "rewrite_backend": rewrite_backend,
        "pairs_model": pairs_model,
        "rewrite_model": rewrite_model,
        "language": language,
        "variant": variant,
        "num_pairs": num_pairs,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "min_keyword_coverage": min_keyword_coverage,
        **stats,
        "token_counter": counter_name,
        "generated": {"pairs": after[0] - before[0], "rewrites": after[1] - before[1]},
        "wall_s": round(wall, 3),
        "documents_per_s": round(stats["documents"] / wall, 4) if wall > 0 else None,
        **({"ray": timings} if timings is not None else {}),
    }
    write_json(work_dir / "stats.json", stats)
    if show:
        print_stats(stats)
    return stats
