"""Quantized formats judged on a real model: SmolLM2-135M-Instruct trained briefly on the bundled teacher pairs,
then `mga quantize --eval` over every format on documents it was not trained on.

    GPTQMODEL_CPU_WORKERS=2 nice -n 19 python bench/quant_formats.py [--train-docs 12] [--epochs 1] [--eval-docs 12]
        [--task-rows 6] [--eval-tokens 128] [--scheme gguf-q8_0 --scheme ...] [--train-only]
    python bench/quant_formats.py --run runs/quickstart --stage rewrite [--task-rows 15] [--eval-tokens 256]

`--run` takes the trained tool model of a finished `mga run` instead (its last round's `--stage` model) and the
teacher's rows of that run's held-out documents, which no round trained on; the rewrite model's answers are
judged (Rate(>=3), the run's offline heuristic judge), as the quickstart judges them, greedily as it answers.

Training is tests/test_real_student.py's (short documents held out, 12 teacher answers, 6 optimizer steps, full
fine-tune on CPU); perplexity is scored on the teacher answers of `--eval-docs` held-out documents, the task
checks answer the first `--task-rows` of them. The model and its exports are cached under
bench/.cache/quant-formats/. What it prints is the command's own formats table and gate (also in
bench/.cache/quant-formats/<run>/model-formats.json), updated after each format.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.cli.main import configure_environment  # noqa: E402
from mga.distill.core.io import write_rows  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "quant-formats"
SCHEMES = ["gguf-q8_0", "gguf-q4_k_m", "gptq-w4", "w8a8", "gptq-w8"]  # fastest to evaluate on CPU first
configure_environment()


def trained_student(train_docs: int, epochs: int, eval_docs: int) -> tuple[Path, Path]:
    """(checkpoint, held-out SFT rows): SmolLM2 fine-tuned on `train_docs` teacher answers, cached."""
    from mga.distill.train.base_model import build_base_model
    from mga.distill.train.config import TrainConfig
    from mga.distill.train.launch import train
    from mga.distill.train.sft_data import build_sft_datasets
    from mga.judge.reference import default_reference_path, reference_pairs_rows

    work = CACHE / f"d{train_docs}-e{epochs}-h{eval_docs}"
    checkpoint, heldout = work / "model" / "model", work / "heldout" / "sft.pairs.eval.jsonl"
    if (checkpoint / "config.json").exists() and heldout.exists():
        return checkpoint, heldout
    base = CACHE / "smollm2-135m"
    if not (base / "config.json").exists():
        build_base_model("smollm2-135m", base)
    by_length = sorted(reference_pairs_rows(default_reference_path("en")), key=lambda row: len(row["meta"]["raw_text"]))
    held_out = {row["meta"]["docid"] for row in by_length[1::2][:eval_docs]}  # as tests/test_real_student.py
    train_rows = [row for row in by_length if row["meta"]["docid"] not in held_out][:train_docs]
    eval_rows = [row for row in by_length if row["meta"]["docid"] in held_out]
    train_file, _ = build_sft_datasets(write_rows(work / "kept.jsonl", train_rows), "pairs", work / "data", eval_fraction=0.0)
    rows, _ = build_sft_datasets(write_rows(work / "heldout" / "kept.jsonl", eval_rows), "pairs", work / "heldout",
                                 eval_fraction=0.0)
    rows.rename(heldout)
    cfg = TrainConfig(student=str(base), eval_fraction=0.0, learning_rate=2e-4, num_train_epochs=epochs,
                      per_device_train_batch_size=1, gradient_accumulation_steps=2, max_length=1536, logging_steps=1,
                      save_strategy="no", report_to="none", use_cpu=True, bf16=False)
    started = time.perf_counter()
    trained = train(train_file, None, checkpoint.parent, cfg, student=str(base), stage="pairs")
    print(f"trained {train_docs} documents x {epochs} epochs in {time.perf_counter() - started:.0f}s -> {trained}")
    return trained, heldout


def from_run(run: Path, stage: str) -> tuple[Path, Path]:
    """(checkpoint, held-out SFT rows) of a finished run: its last round's `stage` model, and the teacher's rows
    of the run's eval documents (stage-1 labels, or the judged and kept rewrites) as SFT examples."""
    from mga.distill.core.io import read_rows
    from mga.distill.train.sft_data import sft_example, unusable_reason
    from mga.distill.train.split import only_docs, read_split

    rounds = sorted((run / "models").glob("round-*"), key=lambda folder: int(folder.name.split("-")[1]))
    checkpoint = rounds[-1] / stage / "model"
    source = run / "labels" / "pairs.kept.jsonl" if stage == "pairs" else run / "filtered" / "teacher.kept.jsonl"
    rows = [row for row in only_docs(read_rows(source), read_split(run / "split.json")["eval"])
            if unusable_reason(row, stage) is None]
    heldout = write_rows(CACHE / f"{run.name}-{rounds[-1].name}-{stage}.heldout.jsonl", [sft_example(row, stage) for row in rows])
    return checkpoint, heldout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-docs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-docs", type=int, default=12)
    parser.add_argument("--task-rows", type=int, default=6)
    parser.add_argument("--eval-tokens", type=int, default=128)
    parser.add_argument("--samples", type=int, default=32, help="calibration rows (GPTQ, W8A8)")
    parser.add_argument("--scheme", action="append", choices=SCHEMES)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--run", type=Path, help="a finished `mga run` folder: quantize its trained tool model")
    parser.add_argument("--stage", choices=["pairs", "rewrite"], default="pairs", help="with --run: which tool model")
    args = parser.parse_args()
    if args.run:
        checkpoint, heldout = from_run(args.run, args.stage)
    else:
        checkpoint, heldout = trained_student(args.train_docs, args.epochs, args.eval_docs)
    if args.train_only:
        return
    sft = next((folder / "data" / "train.jsonl" for folder in (checkpoint.parent, checkpoint.parent.parent)
                if (folder / "data" / "train.jsonl").exists()), None)
    command = [str(Path(sys.executable).with_name("mga")), "quantize", str(checkpoint),
               *[f"--scheme={s}" for s in args.scheme or SCHEMES], "--eval", "--heldout", str(heldout),
               "--eval-rows", str(args.task_rows), "--eval-tokens", str(args.eval_tokens),
               *(["--calibration", str(sft)] if sft else []), "--samples", str(args.samples),
               "--max-length", "512", "--group-size", "64",
               *(["--judge", "heuristic"] if args.stage == "rewrite" else [])]
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"mga quantize --eval: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
