"""`mga analyze loss`: the paper's token-level loss analysis (Figure 7) between two causal LMs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Analyses of trained models: `mga analyze loss` (token-level loss differences, Figure 7).",
                  no_args_is_help=True)


@app.command("loss")
def loss(
    real_model: Annotated[Path, typer.Option(help="Model trained on real data (A).")],
    synthetic_model: Annotated[Path, typer.Option(help="Model trained with synthetic data (B); same tokenizer as A.")],
    texts: Annotated[Path, typer.Option(help="Held-out documents (.jsonl/.parquet rows with 'text', optional 'id').")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    k: Annotated[float, typer.Option(help="Anomaly threshold |mu| + k*sigma (the paper does not publish k).")] = 2.0,
    max_length: Annotated[int, typer.Option(help="Tokens scored per document (the rest is cut).")] = 2048,
    min_tokens: Annotated[int, typer.Option(help="Skip documents shorter than this.")] = 20,
) -> None:
    """Per document: both models' token losses, loss_diff = B - A, and the first anomaly position.

    Writes OUTPUT/documents.jsonl, OUTPUT/summary.json, OUTPUT/loss_diff.png and OUTPUT/first_anomaly.png.
    Example: mga analyze loss --real-model runs/a/model --synthetic-model runs/b/model --texts held_out.jsonl -o loss/
    """
    from mga.distill.analyze import analyze_loss

    analyze_loss(real_model, synthetic_model, texts, output, k=k, max_length=max_length, min_tokens=min_tokens)
    typer.echo(str(output / "summary.json"))
