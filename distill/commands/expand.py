"""`mga expand`: corpus expansion with the two tool models (one pairs call + five rewrites per document)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.commands.common import not_implemented


def expand(
    corpus: Annotated[Path, typer.Argument(help="Corpus .jsonl/.parquet with a text field.")],
    pairs_model: Annotated[str, typer.Option(help="SLM-1 checkpoint or served model name.")],
    rewrite_model: Annotated[str, typer.Option(help="SLM-2 checkpoint or served model name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (MGACorpus schema).")] = Path("expanded"),
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai.")] = "transformers",
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    shard_index: Annotated[int, typer.Option(help="This shard's index (job arrays).")] = 0,
    num_shards: Annotated[int, typer.Option(help="Number of shards.")] = 1,
) -> None:
    """Expand a corpus: per document 5 genre-audience pairs, then 5 rewrites, cleaned, with statistics."""
    not_implemented("expand", "issue: whole pipeline")
