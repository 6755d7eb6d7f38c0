"""`mga expand`: the production step of MGA — expand a corpus with the two tool models.

Per chunk of a document, one SLM-1 call proposes `num_pairs` (genre, audience) pairs and one SLM-2 call per
pair rewrites the chunk for it (the paper's step 9). The rewrites are then cleaned as in the paper's step 10
(`mga.distill.expand.clean`). Kept rows are written in the MGACorpus schema as Parquet shards (or JSONL)
with a dataset card, dropped rows with their reason, and the statistics (tokens in/out, the expansion
factor the paper reports as 3.9x).

Every pass streams: the corpus (`mga.distill.core.sources`), the chunks, generation (`local` or
`ray_executor`), cleaning and output, with resume state on disk, so memory does not grow with the corpus.
For job arrays, shard i of n reads only its own files when there are at least n files, else the documents
whose id hashes to it; each shard writes its own folder, and `merge_shards` adds up the statistics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, get_args

from mga.distill.core.config import MAX_VALIDATION_ATTEMPTS, VARIANTS, CorpusConfig, StructuredOutput
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.expand.card import write_card
from mga.distill.expand.output import (
    DEFAULT_SHARD_BYTES,
    DEFAULT_SHARD_ROWS,
    OUTPUT_FORMATS,
    open_output,
)
from mga.distill.expand.spec import (
    BACKENDS,
    DEFAULT_MIN_KEYWORD_COVERAGE,
    EXECUTORS,
    ExpandSpec,
    shard_dir,
    shard_of,
    token_counter,
)
from mga.distill.expand.todo import open_streams

__all__ = ["expand_corpus", "shard_of"]


def _check(
    *, backends: tuple[str, ...], executor: str, variant: str, num_pairs: int, shard_index: int, num_shards: int,
    limit: int | None, batch_size: int, max_new_tokens: int, max_validation_attempts: int, temperature: float, min_keyword_coverage: float,
    workers: int | None, output_format: str, shard_rows: int, shard_bytes: int, structured_output: str = "off",
) -> None:
    for backend in backends:
        if backend not in BACKENDS:
            raise MgaError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if structured_output not in get_args(StructuredOutput):
        raise MgaError(f"--structured-output {structured_output}: choose one of {', '.join(get_args(StructuredOutput))}")
    if structured_output in ("json_schema", "json_object") and backends[0] == "transformers":
        raise MgaError(f"--structured-output {structured_output}: the transformers backend has no constrained decoding; "
                       "use --pairs-backend llamacpp, vllm or openai, or --structured-output auto or off")
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
    if batch_size < 1 or max_new_tokens < 1 or max_validation_attempts < 1:
        raise MgaError(f"--batch-size {batch_size} --max-new-tokens {max_new_tokens} --max-validation-attempts "
                       f"{max_validation_attempts}: each needs to be at least 1")
    if not 0.0 <= temperature <= 2.0:
        raise MgaError(f"--temperature {temperature}: need 0 <= temperature <= 2")
    if not 0.0 <= min_keyword_coverage <= 1.0:
        raise MgaError(f"--min-keyword-coverage {min_keyword_coverage}: need a share between 0 and 1")
    if workers is not None and workers < 1:
        raise MgaError(f"--workers {workers}: need at least 1")
    if output_format not in OUTPUT_FORMATS:
        raise MgaError(f"--output-format {output_format}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if shard_rows < 1 or shard_bytes < 1:
        raise MgaError(f"--shard-rows {shard_rows} --shard-bytes {shard_bytes}: both need to be at least 1")


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
        ("output", f"{len(stats['output_files'])} {stats['output_format']} file(s) + README.md"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


# ---- the step ------------------------------------------------------------------------------------------------


def _row_counts(work_dir: Path) -> tuple[int, int]:
    """Pairs and rewrite rows already written: the difference over a run is what it generated."""
    with open_streams(work_dir) as (pairs, rewrites):
        return len(pairs), len(rewrites)


def expand_corpus(
    corpus: str | Path,
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
    structured_output: str = "off",
    max_validation_attempts: int = MAX_VALIDATION_ATTEMPTS,
    min_keyword_coverage: float = DEFAULT_MIN_KEYWORD_COVERAGE,
    base_url: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    limit: int | None = None,
    output_format: str = "parquet",
    shard_rows: int = DEFAULT_SHARD_ROWS,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    corpus_cfg: CorpusConfig | None = None,
    filter_cfg: Any = None,
    show: bool = True,
) -> dict[str, Any]:
    """Expand this shard of `corpus` (a file, folder, glob or saved dataset) into `out_dir` (or
    `out_dir/shard-i-of-n`); returns the statistics.

    Writes chunks.jsonl, pairs.jsonl, rewrites.jsonl (resumable intermediates), the kept rows as
    `data/train-*.parquet` (or expanded.jsonl), rejected.jsonl (rows with `reject.reason`), stats.json and a
    dataset card README.md. Rerunning a finished shard generates nothing and rewrites the same outputs.
    `filter_cfg` (a `FilterConfig`) sets the quality monitors' thresholds and benchmark files.
    """
    from mga.distill.expand.clean import clean_and_count
    from mga.distill.label.chunk import chunk_corpus

    pairs_backend, rewrite_backend = pairs_backend or backend, rewrite_backend or backend
    _check(backends=(pairs_backend, rewrite_backend), executor=executor, variant=variant, num_pairs=num_pairs,
           shard_index=shard_index, num_shards=num_shards, limit=limit, batch_size=batch_size,
           max_new_tokens=max_new_tokens, max_validation_attempts=max_validation_attempts, temperature=temperature, min_keyword_coverage=min_keyword_coverage,
           workers=workers, output_format=output_format, shard_rows=shard_rows, shard_bytes=shard_bytes,
           structured_output=structured_output)
    spec = ExpandSpec(
        pairs_model=pairs_model, rewrite_model=rewrite_model, pairs_backend=pairs_backend,
        rewrite_backend=rewrite_backend, language=language, variant=variant,
        num_pairs=num_pairs, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature,
        structured_output=structured_output, base_url=base_url, max_validation_attempts=max_validation_attempts,
    )
    for which, model in (("pairs", pairs_model), ("rewrite", rewrite_model)):
        backend = spec.backend(which)
        if backend == "llamacpp" and not (Path(model).is_file() and Path(model).suffix == ".gguf"):
            raise MgaError(f"--{which}-model {model}: backend llamacpp needs a .gguf file "
                           "(mga quantize CHECKPOINT --scheme gguf-f16)")
        if backend not in ("openai", "llamacpp") and not Path(model).is_dir():
            raise MgaError(f"--{which}-model {model}: no such local checkpoint folder (backend "
                           f"{backend}); give a model folder, or --backend openai with a served model name")
    spec = spec.with_model_ids()  # what rows are resumed by: a retrained checkpoint is another model
    started = time.perf_counter()
    work_dir = shard_dir(Path(out_dir), shard_index, num_shards)
    work_dir.mkdir(parents=True, exist_ok=True)
    chunks = chunk_corpus(corpus, work_dir / "chunks.jsonl", corpus_cfg or CorpusConfig(),
                          shard_index=shard_index, num_shards=num_shards, limit=limit)
    timings: dict[str, Any] | None = None
    before = _row_counts(work_dir)
    if chunks.stat().st_size == 0:
        console.print(f"shard {shard_index} of {num_shards}: no documents in this shard", markup=False)
    elif executor == "ray":
        from mga.distill.expand.ray_executor import run_on_ray

        timings = run_on_ray(work_dir, spec, workers=workers, ray_address=ray_address)
    else:
        from mga.distill.expand.local import run_local

        run_local(work_dir, spec)
    after = _row_counts(work_dir)
    count_tokens = token_counter(spec)
    output = open_output(work_dir, output_format, shard_rows=shard_rows, shard_bytes=shard_bytes)
    stats = clean_and_count(work_dir, spec, output, min_keyword_coverage=min_keyword_coverage,
                            count_tokens=count_tokens, filter_cfg=filter_cfg)
    wall = time.perf_counter() - started
    stats = {
        "out_dir": str(work_dir),
        "corpus": str(corpus),
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
        "output_format": output_format,
        **stats,
        "token_counter": count_tokens.name,
        "generated": {"pairs": after[0] - before[0], "rewrites": after[1] - before[1]},
        "wall_s": round(wall, 3),
        "documents_per_s": round(stats["documents"] / wall, 4) if wall > 0 else None,
        **({"ray": timings} if timings is not None else {}),
    }
    write_json(work_dir / "stats.json", stats)
    write_card(work_dir, stats)
    if show:
        print_stats(stats)
    return stats
