"""SFT throughput: useful (non-pad) tokens per second with packing (BFD, padding-free) vs plain padding.

Same data (chat examples of widely varied length, so padding matters), same model, same epochs; each
configuration trains in its own process so that peak memory (RSS, or torch.cuda.max_memory_allocated on a
GPU) is measured per configuration. Prints both runs and the ratio packed/padded (target >= 1.5x).

    python bench/sft_throughput.py                  # tiny qwen2 xs on CPU
    python bench/sft_throughput.py --size s --threads 2
    python bench/sft_throughput.py --model-05b      # on a CUDA machine: a ~0.5B config-built model in bf16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2)


def make_data(path: Path, n: int, seed: int) -> None:
    """Chat examples whose answers range from a sentence to a long passage (real text shipped with Python)."""
    from pydoc_data.topics import topics

    from mga.distill.core.io import write_rows

    rng = random.Random(seed)
    texts = [t for t in topics.values() if len(t) > 2000]
    rows = []
    for i in range(n):
        text = rng.choice(texts)
        chars = int(min(len(text), rng.lognormvariate(6.3, 1.0)))  # median ~550 chars, long tail
        start = rng.randrange(0, max(1, len(text) - chars))
        rows.append({"messages": [
            {"role": "system", "content": "Rewrite the passage for a new audience."},
            {"role": "user", "content": text[start:start + 200]},
            {"role": "assistant", "content": text[start:start + chars]},
        ], "docid": f"d{i}", "key": f"d{i}"})
    write_rows(path, rows)


def build_05b(tiny_dir: Path, out: Path) -> Path:
    """A ~0.5B Qwen2-shaped model (random weights) with the tiny model's tokenizer: throughput only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    config = Qwen2Config(vocab_size=len(tok), max_position_embeddings=32768, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **QWEN_05B)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_one(name: str, data: str, student: str, out: str, settings: dict, threads: int | None, queue) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from mga.distill.train.config import TrainConfig
    from mga.distill.train.sft import build_trainer

    cfg = TrainConfig(**settings)
    trainer = build_trainer(data, None, out, cfg, student=student)
    useful = sum(len(x) for x in trainer.train_dataset["input_ids"]) if not trainer.args.packing else sum(
        sum(x) for x in trainer.train_dataset["seq_lengths"])
    processed = sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    epochs = trainer.args.num_train_epochs
    queue.put({
        "name": name,
        "useful_tokens": int(useful * epochs),
        "pad_share": 1 - useful / processed,
        "seconds": seconds,
        "tokens_per_s": useful * epochs / seconds,
        "steps": trainer.state.global_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "final_loss": next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per padded batch")
    parser.add_argument("--packed-batch-size", type=int, default=1,
                        help="packed bins (of max-length tokens) per step, flattened into one padding-free row; on CPU "
                             "SDPA builds a dense block mask over that row, so keep it small there (flash-attention "
                             "varlen on a GPU has no such cost)")
    parser.add_argument("--size", default="xs", choices=["xs", "s"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model-05b", action="store_true", help="~0.5B config-built model (needs CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from mga.distill.train.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="mga-sft-bench-"))
    student = build_tiny_model(work / "tiny", size=args.size, seed=args.seed)
    if args.model_05b:
        import torch

        if not torch.cuda.is_available():
            sys.exit("--model-05b needs a CUDA GPU")
        student = build_05b(student, work / "qwen2-0.5b")
    data = work / "train.jsonl"
    make_data(data, args.examples, args.seed)
    common = dict(learning_rate=1e-4, num_train_epochs=args.epochs, max_length=args.max_length, logging_steps=5,
                  save_strategy="no", warmup_steps=0.0, seed=args.seed, dataloader_drop_last=False)
    runs = {
        "padding": dict(common, per_device_train_batch_size=args.batch_size, packing=False),
        "packing (bfd, padding-free)": dict(common, per_device_train_batch_size=args.packed_batch_size, packing=True),
    }
    ctx = mp.get_context("spawn")
    results = []
    for i, (name, settings) in enumerate(runs.items()):
        queue = ctx.Queue()
        proc = ctx.Process(target=run_one, args=(name, str(data), str(student), str(work / f"run{i}"), settings,
                                                 args.threads, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    print(f"\nSFT throughput: {args.examples} examples, {args.epochs:g} epoch(s), max_length {args.max_length}, "
          f"model {Path(student).name}, threads {args.threads or 'default'}")
    print(f"{'config':30} {'useful tok':>10} {'pad %':>6} {'steps':>6} {'seconds':>8} {'tok/s':>9} {'peak RSS MB':>12} "
          f"{'peak CUDA MB':>12} {'final loss':>10}")
    for r in results:
        cuda = f"{r['peak_cuda_mb']:.0f}" if r["peak_cuda_mb"] is not None else "-"
        print(f"{r['name']:30} {r['useful_tokens']:>10} {100 * r['pad_share']:>6.1f} {r['steps']:>6} {r['seconds']:>8.1f} {r['tokens_per_s']:>9.0f} "
              f"{r['peak_rss_mb']:>12.0f} {cuda:>12} {r['final_loss']:>10.3f}")
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"ratio packed / padded useful tokens/s: {ratio:.2f}x (target >= 1.5x)")
    (work / "results.json").write_text(json.dumps({"results": results, "ratio": ratio}, indent=2))
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
