"""`mga quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.cli.common import RecipeOpt, SetOpt
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError


# the option that sets each QuantizeConfig field: a bad value is reported under what the user typed
OPTIONS = {"schemes": "--scheme", "group_size": "--group-size", "desc_act": "--desc-act", "calibration_samples": "--samples",
           "calibration_max_length": "--max-length", "corpus_fraction": "--corpus-fraction", "eval": "--eval"}


def _config(**values):
    from mga.quantize.config import QuantizeConfig
    from pydantic import ValidationError

    try:
        return QuantizeConfig(**values)
    except ValidationError as e:
        problems = "; ".join(f"{OPTIONS.get(str(err['loc'][0]), err['loc'][0])} {err['input']}: {err['msg']}"
                             for err in e.errors())
        raise MgaError(f"mga quantize: {problems}") from None


def quantize(
    checkpoint: Annotated[Path, typer.Argument(help="Full or merged-LoRA checkpoint folder.")],
    scheme: Annotated[list[str], typer.Option(help="gptq-w4, gptq-w8, w8a8 (vLLM) or gguf-f16, gguf-q8_0, gguf-q4_k_m "
                                              "(llama.cpp/Ollama); repeat to export several and, with --eval, compare them.")] = ["gptq-w4"],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder, one scheme only [default: CHECKPOINT-SCHEME].")] = None,
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
    eval: Annotated[bool, typer.Option("--eval", help="Compare full vs quantized on held-out prompts; with every scheme, "
                                       "a formats table and quality gate in CHECKPOINT-formats.json beside the exports.")] = False,
    heldout: Annotated[Path | None, typer.Option(help="Rows (chat 'messages') for --eval and GGUF checks [default: "
                                                 "CHECKPOINT/../data/eval.jsonl, else train.jsonl, named as such].")] = None,
    judge: Annotated[str | None, typer.Option(
        help="--eval: also judge the rewrite model's answers, full vs quantized: heuristic or llm (endpoint from --recipe/--set).")] = None,
    eval_rows: Annotated[int, typer.Option(help="--eval: prompts answered by both models for the task checks.")] = 32,
    eval_tokens: Annotated[int, typer.Option(help="--eval: new tokens per answer in the task checks.")] = 256,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Quantize a tool model for deployment: GPTQ (GPTQModel), W8A8 (llm-compressor), GGUF (llama.cpp, Ollama).

    Example: mga quantize runs/x/models/round-1/rewrite/model --scheme gguf-q8_0 -o rewrite-q8.gguf.d

    Example: mga quantize CKPT --scheme gptq-w4 --scheme gptq-w8 --scheme w8a8 --scheme gguf-q8_0 --scheme gguf-q4_k_m --eval
    """
    from mga.distill.core.config import default_corpus_path
    from mga.quantize.calibration import build_calibration
    from mga.quantize.export import check_checkpoint, quantize_checkpoint
    from transformers import AutoTokenizer

    schemes = list(dict.fromkeys(scheme))
    cfg = _config(schemes=schemes, group_size=group_size, desc_act=desc_act, calibration_samples=samples,
                  calibration_max_length=max_length, corpus_fraction=corpus_fraction, eval=eval)
    check_checkpoint(checkpoint)
    if output is not None and len(schemes) > 1:
        raise MgaError("--output names one folder: with several --scheme, leave it out (each goes to CHECKPOINT-SCHEME)")
    if heldout is not None and not heldout.exists():
        raise MgaError(f"--heldout: {heldout} not found")
    compared = _Comparison(checkpoint, heldout, judge, recipe, set_, eval_rows, eval_tokens) if eval else None
    calibrated = None
    for name in schemes:  # each export is compared as soon as it is written: a stopped run keeps a partial table
        out_dir = output or checkpoint.with_name(f"{checkpoint.name}-{name}")
        if name.startswith("gguf-"):
            _gguf(checkpoint, out_dir, name, heldout, greedy_check=not eval)
            if compared:
                compared.add(out_dir)
            continue
        if calibrated is None:
            sft = calibration or checkpoint.parent / "data" / "train.jsonl"
            if calibration is None and not sft.exists():
                console.print(f"calibration: no {sft}; using corpus text only (pass --calibration SFT_TRAIN_JSONL to "
                              "calibrate on the tool's own prompts)", markup=False)
            calibrated = build_calibration(
                AutoTokenizer.from_pretrained(checkpoint), sft_rows=sft if sft.exists() or calibration else None,
                corpus_path=corpus or default_corpus_path(), num_samples=cfg.calibration_samples,
                max_length=cfg.calibration_max_length, corpus_fraction=cfg.corpus_fraction, seed=seed)
        texts, record = calibrated
        quantize_checkpoint(checkpoint, out_dir, name, group_size=cfg.group_size, desc_act=cfg.desc_act,
                            calibration=texts, calibration_record=record, num_samples=cfg.calibration_samples,
                            max_length=cfg.calibration_max_length, seed=seed, device=device)
        typer.echo(str(out_dir))
        if compared:
            compared.add(out_dir)


def _gguf(checkpoint: Path, out_dir: Path, scheme: str, heldout: Path | None, *, greedy_check: bool) -> None:
    """Export and verify in llama.cpp; the greedy comparison at export is left to --eval when it runs."""
    import json

    from mga.quantize.evaluate import eval_rows
    from mga.quantize.gguf import MARKER, export_gguf

    try:
        rows, rows_used = eval_rows(checkpoint, heldout)[:2] if greedy_check else ([], "compared by --eval")
    except MgaError:
        rows, rows_used = [], "none"
    export_gguf(checkpoint, out_dir, scheme, rows=rows, rows_used=rows_used)
    typer.echo(str(out_dir))
    check = json.loads((out_dir / MARKER).read_text(encoding="utf-8")).get("verification", {})
    if check.get("agreement"):
        console.print(f"llama.cpp vs full model, greedy on {check['prompts']} prompts ({check['rows_used']}): "
                      f"{100 * check['agreement']['identical']:.0f}% identical, token overlap "
                      f"{100 * check['agreement']['token_overlap']:.1f}%, stopped at end-of-turn "
                      f"{100 * check['stopped_at_end_of_turn']['gguf']:.0f}% (full {100 * check['stopped_at_end_of_turn']['full']:.0f}%)",
                      markup=False)


class _Comparison:
    """--eval: each export against the full model (measured, answering and judged once for all), and after each the
    formats table with its quality gate, printed and written to CHECKPOINT-formats.json beside the exports."""

    def __init__(self, checkpoint: Path, heldout: Path | None, judge: str | None, recipe, set_, max_rows: int,
                 max_new_tokens: int):
        from functools import partial

        self.checkpoint, self.heldout, self.max_rows, self.max_new_tokens = checkpoint, heldout, max_rows, max_new_tokens
        self.judged, self.memo, self.results = None, {}, []
        if judge is not None:
            from mga.distill.cli.common import load_config
            from mga.judge.judging import judged_rate

            cfg = load_config(recipe, [*(set_ or []), f"judge.backend={judge}"])
            self.judged = partial(judged_rate, cfg=cfg.judge, language=cfg.language, teacher=cfg.teacher)

    def add(self, out_dir: Path) -> None:
        from functools import partial

        from mga.distill.core.io import write_json
        from mga.judge.pairs_check import parse_pairs
        from mga.quantize.evaluate import evaluate_export, formats_markdown, formats_table, task_rows

        judge_rate = partial(self.judged, work_dir=out_dir / "judged") if self.judged else None
        result = evaluate_export(self.checkpoint, out_dir, heldout=self.heldout, pairs_check=lambda text: parse_pairs(text)[1],
                                 judge_rate=judge_rate, max_rows=self.max_rows, max_new_tokens=self.max_new_tokens,
                                 memo=self.memo)
        f, q = result["full"], result["quantized"]
        console.print(
            f"{result['scheme']}: perplexity {f['perplexity']:.3f} -> {q['perplexity']:.3f} (x{result['ratios']['perplexity']}), "
            f"linear bytes x{result['ratios']['linear_bytes']}, tokens/s {f['tokens_per_s']} -> {q['tokens_per_s']} "
            f"({q['backend']}); rows: {result['rows_used']}", markup=False, soft_wrap=True)
        for row in task_rows(result["task"]):
            console.print(f"  {row['check']}: {row['full'] or '-'} -> {row['quantized']}", markup=False)
        console.print(f"written to {out_dir / 'compare.json'}", markup=False)
        self.results.append(result)
        table = formats_table(self.results)
        table_json = write_json(out_dir.parent / f"{self.checkpoint.name}-formats.json", table)
        console.print(formats_markdown(table), markup=False, soft_wrap=True)
        console.print(f"written to {table_json}", markup=False)
