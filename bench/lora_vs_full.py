"""Full fine-tune or LoRA for the quickstart's student: which raises SmolLM2's valid-pairs rate more per minute.

    python bench/lora_vs_full.py [--train-docs 20] [--eval-docs 14] [--steps 5] [--lora-r 16] [--lora-lr 1e-3]

SmolLM2-135M-Instruct (`mga base-model smollm2-135m`, cached under bench/.cache/) is trained on the bundled
teacher's stage-1 answers exactly as the quickstart trains it (batch 1 x 4 accumulation, cosine, warm-up 1,
max_length 1536, full fine-tune at 2e-4), then as LoRA (all linear layers, rank `--lora-r`, alpha 2r, merged
after training) for the same steps, and as LoRA for as many steps as the full fine-tune's CPU time allows.
Every model, the untrained one included, answers the same held-out documents as the quickstart's rounds do:
llama.cpp on its f16 GGUF export, the stage-1 schema as a grammar, sampled and seeded, one attempt. Printed per
model: the trainer's runtime (seconds of training on all cores, model loading excluded; run it on an idle
machine), valid pairs k/n with the 95% Wilson interval, and valid answers gained over the untrained student per
minute of training. Trained models are cached and reused with their recorded runtime. One seed, few documents:
intervals that overlap say the two methods are not told apart here.
"""

from __future__ import annotations

import argparse
import os
import sys
import json
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.cli.main import configure_environment  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "lora-vs-full"
configure_environment()


def split(train_docs: int, eval_docs: int) -> tuple[list[dict], set[str]]:
    """(teacher rows to train on, held-out docids): short documents at odd positions held out, as the real-student
    test does, so that answers stay short."""
    from mga.judge.reference import default_reference_path, reference_pairs_rows

    by_length = sorted(reference_pairs_rows(default_reference_path("en")), key=lambda row: len(row["meta"]["raw_text"]))
    held_out = {row["meta"]["docid"] for row in by_length[1::2][:eval_docs]}
    return [row for row in by_length if row["meta"]["docid"] not in held_out][:train_docs], held_out


def valid_pairs(gguf: Path, chunks: Path, out: Path) -> int:
    """Valid five-pair answers of a GGUF model to the held-out documents, under the quickstart's stage-1 decoding."""
    import yaml

    from mga.distill.core.config import GenerationParams
    from mga.distill.core.io import read_rows
    from mga.distill.generate.local import LocalGenerator
    from mga.distill.label.labeling import label_pairs

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml").read_text())
    params = GenerationParams(**recipe["teacher"]["pairs"])
    label_pairs(chunks, out, LocalGenerator(str(gguf), backend="llamacpp"), params=params, max_validation_attempts=1,
                overwrite=True)
    return sum(row["status"] == "ok" for row in read_rows(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-docs", type=int, default=20)
    parser.add_argument("--eval-docs", type=int, default=14)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    args = parser.parse_args()
    import torch

    from mga.distill.core.io import write_rows
    from mga.distill.train.base_model import build_base_model
    from mga.distill.train.config import TrainConfig
    from mga.distill.train.launch import train
    from mga.distill.train.sft_data import build_sft_datasets
    from mga.judge.reference import default_reference_path, reference_chunk_rows
    from mga.judge.scores import wilson_ci
    from mga.quantize.gguf import local_gguf

    torch.set_num_threads(os.cpu_count() or 2)
    base = build_base_model("smollm2-135m", CACHE / "smollm2-135m")
    work = CACHE / f"d{args.train_docs}-h{args.eval_docs}-s{args.steps}"
    train_rows, held_out = split(args.train_docs, args.eval_docs)
    chunks = write_rows(work / "chunks.eval.jsonl", [row for row in reference_chunk_rows(default_reference_path("en"))
                                                     if row["meta"]["docid"] in held_out])
    train_file, _ = build_sft_datasets(write_rows(work / "kept.jsonl", train_rows), "pairs", work / "sft", eval_fraction=0.0)
    common = dict(student=str(base), eval_fraction=0.0, num_train_epochs=1, lr_scheduler_type="cosine", warmup_steps=1,
                  per_device_train_batch_size=1, gradient_accumulation_steps=4, max_length=1536, logging_steps=1,
                  save_strategy="no", report_to="none", use_cpu=True, bf16=False)
    lora = {"r": args.lora_r, "lora_alpha": 2 * args.lora_r, "lora_dropout": 0.0, "target_modules": "all-linear"}

    def trained(name: str, **settings) -> tuple[Path, float]:
        """The checkpoint (reused when trained before with the same settings) and the trainer's own runtime."""
        checkpoint = train(train_file, None, work / name, TrainConfig(**common, **settings), student=str(base), stage="pairs")
        return checkpoint, json.loads((work / name / "train_done.json").read_text())["metrics"]["train_runtime"]

    results = [("untrained", base, 0.0)]
    full, full_s = trained("full", learning_rate=2e-4, max_steps=args.steps)
    results.append((f"full fine-tune, {args.steps} steps, lr 2e-4", full, full_s))
    lora_same, lora_s = trained("lora", learning_rate=args.lora_lr, max_steps=args.steps, lora=lora)
    results.append((f"LoRA r{args.lora_r}, {args.steps} steps, lr {args.lora_lr:g}", lora_same, lora_s))
    equal_steps = max(args.steps, round(args.steps * full_s / lora_s))
    if equal_steps > args.steps:
        checkpoint, seconds = trained(f"lora-{equal_steps}", learning_rate=args.lora_lr, max_steps=equal_steps, lora=lora)
        results.append((f"LoRA r{args.lora_r}, {equal_steps} steps (full's time)", checkpoint, seconds))

    rows = []
    for label, checkpoint, seconds in results:
        valid = valid_pairs(local_gguf(checkpoint), chunks, work / f"answers.{checkpoint.parent.name}.jsonl")
        rows.append((label, seconds, valid))
    n, untrained = len(held_out), rows[0][2]
    print(f"\n{args.train_docs} teacher answers, {n} held-out documents, quickstart decoding; {os.cpu_count()} cores")
    print(f"{'model':44} {'train s':>8} {'valid pairs (95% CI)':>24} {'gain / train min':>17}")
    for label, seconds, valid in rows:
        low, high = wilson_ci(valid, n)
        gain = f"{(valid - untrained) / (seconds / 60):.2f}" if seconds else "-"
        print(f"{label:44} {seconds:8.0f} {f'{valid}/{n} [{low:.1f}, {high:.1f}]':>24} {gain:>17}")


if __name__ == "__main__":
    main()
