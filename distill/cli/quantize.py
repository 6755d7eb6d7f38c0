"""`mga quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError


def _config(**values):
    from mga.quantize.config import QuantizeConfig
    from pydantic import ValidationError

    try:
        return QuantizeConfig(**values)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err['input']!r})" for err in e.errors())
        raise MgaError(f"mga quantize: {problems}") from None


def quantize(
    checkpoint: Annotated[Path, typer.Argument(help="Full or merged-LoRA checkpoint folder.")],
    scheme: Annotated[str, typer.Option(help="gptq-w4, gptq-w8 or w8a8.")] = "gptq-w4",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder [default: CHECKPOINT-SCHEME].")] = None,
    group_size: Annotated[int, typer.Option(help="GPTQ group size (-1 = per channel).")] = 128,
    desc_act: Annotated[bool, typer.Option(help="GPTQ act-order.")] = False,
    calibration: Annotated[Path | None, typer.Option(
        help="SFT train.jsonl (rows with 'messages') [default: CHECKPOINT/../data/train.jsonl].")] = None,
    corpus: Annotated[Path | None, typer.Option(help="General text (rows with 'text') mixed into calibration.")] = None,
    samples: Annotated[int, typer.Option(help="Calibration rows.")] = 512,
    max_length: Annotated[int, typer.Option(help="Calibration tokens per row.")] = 2048,
    corpus_fraction: Annotated[float, typer.Option(help="Share of corpus text in calibration.")] = 0.25,
    device: Annotated[str | None, typer.Option(help="cpu or cuda [default: GPU when visible, else CPU].")] = None,
    seed: Annotated[int, typer.Option(help="Calibration sampling seed.")] = 0,
    eval: Annotated[bool, typer.Option("--eval", help="Compare full vs quantized on held-out prompts.")] = False,
    heldout: Annotated[Path | None, typer.Option(
        help="Held-out rows for --eval [default: CHECKPOINT/../data/eval.jsonl].")] = None,
) -> None:
    """Quantize a tool model for deployment (GPTQ via GPTQModel, W8A8 via llm-compressor)."""
    from mga.distill.core.config import default_corpus_path
    from mga.quantize.calibration import build_calibration
    from mga.quantize.export import check_checkpoint, quantize_checkpoint
    from transformers import AutoTokenizer

    cfg = _config(schemes=[scheme], group_size=group_size, desc_act=desc_act, calibration_samples=samples,
                  calibration_max_length=max_length, corpus_fraction=corpus_fraction, eval=eval)
    check_checkpoint(checkpoint)
    out_dir = output or checkpoint.with_name(f"{checkpoint.name}-{scheme}")
    if eval:
        heldout = heldout or checkpoint.parent / "data" / "eval.jsonl"
        if not heldout.exists():
            raise MgaError(f"--eval: {heldout} not found; pass --heldout EVAL_JSONL")
    sft = calibration or checkpoint.parent / "data" / "train.jsonl"
    if calibration is None and not sft.exists():
        console.print(f"calibration: no {sft}; using corpus text only (pass --calibration SFT_TRAIN_JSONL to "
                      "calibrate on the tool's own prompts)", markup=False)
    texts, record = build_calibration(
        AutoTokenizer.from_pretrained(checkpoint), sft_rows=sft if sft.exists() or calibration else None,
        corpus_path=corpus or default_corpus_path(), num_samples=cfg.calibration_samples,
        max_length=cfg.calibration_max_length, corpus_fraction=cfg.corpus_fraction, seed=seed)
    quantize_checkpoint(checkpoint, out_dir, scheme, group_size=cfg.group_size, desc_act=cfg.desc_act,
                        calibration=texts, calibration_record=record, num_samples=cfg.calibration_samples,
                        max_length=cfg.calibration_max_length, seed=seed, device=device)
    typer.echo(str(out_dir))
    if eval:
        from mga.quantize.evaluate import compare

        result = compare(checkpoint, out_dir, heldout, out_dir / "compare.json")
        f, q = result["full"], result["quantized"]
        console.print(
            f"perplexity {f['perplexity']:.3f} -> {q['perplexity']:.3f} (x{result['ratios']['perplexity']}), "
            f"linear bytes x{result['ratios']['linear_bytes']}, tokens/s {f['tokens_per_s']} -> {q['tokens_per_s']}; "
            f"written to {out_dir / 'compare.json'}", markup=False)
