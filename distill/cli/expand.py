"""`mga expand`: corpus expansion with the two tool models (one pairs call + five rewrites per document)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.config import MAX_VALIDATION_ATTEMPTS
from mga.distill.expand.output import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_ROWS
from mga.distill.expand.spec import DEFAULT_MIN_KEYWORD_COVERAGE


def expand(
    corpus: Annotated[
        str | None,
        typer.Argument(help="Corpus: a .jsonl/.jsonl.gz/.jsonl.zst/.parquet file, a folder of them, a quoted glob, "
                            "or a saved `datasets` folder."),
    ] = None,
    pairs_model: Annotated[str | None, typer.Option(help="SLM-1 checkpoint or served model name.")] = None,
    rewrite_model: Annotated[str | None, typer.Option(help="SLM-2 checkpoint or served model name.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (MGACorpus schema).")] = Path("expanded"),
    merge: Annotated[
        bool, typer.Option("--merge", help="Add up the finished shards in --output (stats.json, README.md); no corpus.")
    ] = False,
    backend: Annotated[str, typer.Option(help="transformers, vllm, openai or llamacpp (a .gguf file, CPUs).")] = "transformers",
    pairs_backend: Annotated[str | None, typer.Option(help="Backend of the pairs model; default --backend.")] = None,
    rewrite_backend: Annotated[
        str | None, typer.Option(help="Backend of the rewrite model; default --backend.")
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    shard_index: Annotated[int, typer.Option(help="This shard's index (job arrays).")] = 0,
    num_shards: Annotated[int, typer.Option(help="Number of shards.")] = 1,
    language: Annotated[str, typer.Option(help="Prompt language (data/prompts/<language>).")] = "en",
    variant: Annotated[str, typer.Option(help="Rewrite prompt: base, strict or relaxed.")] = "base",
    num_pairs: Annotated[int, typer.Option(help="Genre-audience pairs (rewrites) per document chunk.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate() batch (local models).")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Max tokens per answer (paper: 4096).")] = 4096,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy, deterministic.")] = 0.0,
    structured_output: Annotated[str, typer.Option(
        help="Stage-1 answers under their JSON schema: off, auto, json_schema or json_object (not transformers).")] = "off",
    max_validation_attempts: Annotated[
        int, typer.Option(help="Answers per request before a rejected one is final (a recipe's "
                               "label.max_validation_attempts).")
    ] = MAX_VALIDATION_ATTEMPTS,
    min_keyword_coverage: Annotated[
        float, typer.Option(help="Drop rewrites keeping less than this share of the original's keywords.")
    ] = DEFAULT_MIN_KEYWORD_COVERAGE,
    benchmark: Annotated[
        list[Path] | None, typer.Option(help="Eval-set file (.jsonl/.parquet rows with 'text') to decontaminate "
                                             "against (word 13-grams); repeat for several.")
    ] = None,
    filter_config: Annotated[
        Path | None, typer.Option(help="YAML of the filter's thresholds (a recipe's `filter:` keys: max_copy_rate, "
                                       "min_diversity, near_duplicate_threshold, ...; see docs/expand.md).")
    ] = None,
    chunk_tokens: Annotated[int, typer.Option(help="Split documents longer than this many tokens.")] = 4096,
    text_field: Annotated[str, typer.Option(help="Corpus field holding the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="Corpus field holding the document id.")] = "id",
    limit: Annotated[int | None, typer.Option(help="Expand only the first N documents (of this shard).")] = None,
    output_format: Annotated[
        str, typer.Option(help="parquet (data/train-*.parquet) or jsonl (expanded.jsonl).")
    ] = "parquet",
    shard_rows: Annotated[int, typer.Option(help="Rows per Parquet output file at most.")] = DEFAULT_SHARD_ROWS,
    shard_bytes: Annotated[
        int, typer.Option(help="Bytes per Parquet output file, about, at most.")
    ] = DEFAULT_SHARD_BYTES,
    base_url: Annotated[
        str | None, typer.Option(help="Endpoint serving both tool models (backend openai); default $OPENAI_BASE_URL.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (executor ray); default: start Ray locally.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Model actors per stage (executor ray); default: CPUs.")] = None,
) -> None:
    """Expand a corpus: per document 5 genre-audience pairs, then 5 rewrites, cleaned, with statistics."""
    from mga.distill.core.config import CorpusConfig
    from mga.distill.core.console import console
    from mga.distill.core.errors import MgaError
    from mga.distill.core.io import check_output
    from mga.distill.core.sources import resolve
    from mga.distill.expand.card import merge_shards
    from mga.distill.expand.expand import expand_corpus
    from pydantic import ValidationError

    if merge:
        if corpus is not None:
            raise MgaError("--merge reads the shards in --output: give no corpus")
        stats = merge_shards(output)
        console.print(f"merged {stats['shards_merged']} shards: {stats['expanded']:,} rows kept, expansion factor "
                      f"{stats['expansion_factor']:.2f}x -> {output / 'stats.json'}, {output / 'README.md'}",
                      markup=False)
        return
    missing = [name for name, value in (("CORPUS", corpus), ("--pairs-model", pairs_model),
                                        ("--rewrite-model", rewrite_model)) if value is None]
    if missing:
        raise MgaError(f"missing {', '.join(missing)} (or give --merge to add up finished shards)")
    resolve(corpus)  # a missing or empty corpus is the first thing to say
    check_output(output, [corpus], folder=True)
    try:
        corpus_cfg = CorpusConfig(path=corpus, chunk_tokens=chunk_tokens, text_field=text_field, id_field=id_field)
    except ValidationError as e:
        raise MgaError(f"--chunk-tokens {chunk_tokens}: {e.errors()[0]['msg']}") from None
    filter_cfg = _filter_config(filter_config, benchmark or [])
    expand_corpus(
        corpus, output, pairs_model=pairs_model, rewrite_model=rewrite_model, backend=backend,
        pairs_backend=pairs_backend, rewrite_backend=rewrite_backend, executor=executor,
        language=language, variant=variant, num_pairs=num_pairs, shard_index=shard_index, num_shards=num_shards,
        batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature, structured_output=structured_output,
        max_validation_attempts=max_validation_attempts,
        min_keyword_coverage=min_keyword_coverage, base_url=base_url, ray_address=ray_address, workers=workers,
        limit=limit, output_format=output_format, shard_rows=shard_rows, shard_bytes=shard_bytes,
        corpus_cfg=corpus_cfg, filter_cfg=filter_cfg,
    )


def _filter_config(path: Path | None, benchmarks: list[Path]):
    """The filter's thresholds from a YAML file of a recipe's `filter:` keys, plus the --benchmark files."""
    import yaml
    from mga.distill.core.errors import MgaError
    from mga.distill.core.language import validation_problems
    from mga.judge.config import FilterConfig
    from pydantic import ValidationError

    data = {}
    if path is not None:
        if not path.is_file():
            raise MgaError(f"--filter-config {path}: no such file")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data = data.get("filter", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise MgaError(f"--filter-config {path}: expected a mapping of filter keys")
    for bench in benchmarks:
        if not bench.is_file():
            raise MgaError(f"--benchmark {bench}: no such file")
    data["benchmarks"] = [*data.get("benchmarks", []), *map(str, benchmarks)]
    try:
        return FilterConfig.model_validate(data)
    except ValidationError as e:
        raise MgaError("; ".join(f"--filter-config: {p}" for p in validation_problems(e))) from None
