"""GPTQ versus round-to-nearest on a tiny model trained long enough for perplexity to mean something.

    python bench/quant_quality.py [--size xs|s] [--steps 400] [--samples 128] [--group-size 128] [--w8a8]

Prints, for 4-bit and 8-bit: the perplexity rise of GPTQ and of RTN (same bits, same group size) over the
full model on held-out corpus documents, their ratio (target: GPTQ-4's rise <= 0.5x RTN-4's), linear-layer
bytes over fp16 (target <= 0.3 for 4-bit) and quantization seconds. The trained model is cached under
bench/.cache/ so reruns only quantize.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.cli.main import configure_environment  # noqa: E402
from mga.distill.core.config import default_corpus_path  # noqa: E402
from mga.distill.core.io import read_rows, write_rows  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
configure_environment()
HOLDOUT = 10  # every 10th corpus document is held out of training and calibration


def train(folder: Path, size: str, steps: int, batch: int = 16, length: int = 128, lr: float = 3e-3) -> Path:
    """Pretrain the tiny model on the sample corpus (held-out documents excluded); cached by size and steps."""
    import torch
    from mga.distill.train.tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (folder / "trained.json").exists():
        return folder
    build_tiny_model(folder, arch="qwen2", size=size, seed=0)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    docs = [r["text"] for i, r in enumerate(read_rows(default_corpus_path())) if i % HOLDOUT]
    ids = torch.tensor([t for d in docs for t in tokenizer(d, truncation=True, max_length=1 << 16)["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(ids) - length - 1, (batch,))
        x = torch.stack([ids[s : s + length] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"  train step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - started:.0f}s)", flush=True)
    model.save_pretrained(folder)
    (folder / "trained.json").write_text(json.dumps({"steps": steps, "batch": batch, "length": length}) + "\n")
    return folder


def sft_rows(docs: list[dict]) -> list[dict]:
    """SFT-shaped calibration rows from training documents (continue a passage), as `mga train` would save."""
    rows = []
    for doc in docs:
        for start in range(0, min(len(doc["text"]), 3000), 600):
            piece = doc["text"][start : start + 600]
            if len(piece) >= 300:
                rows.append({"messages": [{"role": "user", "content": "Continue:\n" + piece[:250]},
                                          {"role": "assistant", "content": piece[250:]}], "key": f"{doc['id']}:{start}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="xs", choices=["xs", "s"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--desc-act", action="store_true", help="GPTQ act-order")
    parser.add_argument("--w8a8", action="store_true", help="also measure W8A8 (llm-compressor; slow on CPU)")
    args = parser.parse_args()

    import torch
    from mga.quantize.calibration import build_calibration
    from mga.quantize.evaluate import (
        checkpoint_sizes,
        compare,
        linear_layer_names,
        perplexity,
        scored_example,
    )
    from mga.quantize.export import quantize_checkpoint
    from mga.quantize.rtn import rtn_quantize_
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 2)
    full = train(CACHE / f"qwen2-{args.size}-{args.steps}", args.size, args.steps)
    work = CACHE / f"quant-{args.size}-{args.steps}-g{args.group_size}-n{args.samples}{'-act' if args.desc_act else ''}"
    docs = read_rows(default_corpus_path())
    tokenizer = AutoTokenizer.from_pretrained(full)
    heldout = []  # every held-out document, cut into windows of max_length tokens (all its tokens are scored)
    for i, doc in enumerate(docs):
        if i % HOLDOUT == 0:
            ids = tokenizer(doc["text"], truncation=True, max_length=1 << 16)["input_ids"]
            heldout += [{"text": tokenizer.decode(ids[s : s + args.max_length])} for s in range(0, len(ids), args.max_length)
                        if len(ids[s : s + args.max_length]) > 16]
    train_docs = [d for i, d in enumerate(docs) if i % HOLDOUT]
    corpus = write_rows(work / "train-corpus.jsonl", train_docs)  # the default mix, without held-out documents
    texts, record = build_calibration(tokenizer, sft_rows=sft_rows(train_docs), corpus_path=corpus,
                                      num_samples=args.samples, max_length=args.max_length)
    examples = [scored_example(tokenizer, row, args.max_length) for row in heldout]

    results = {}
    for bits in (4, 8):
        started = time.perf_counter()
        out = quantize_checkpoint(full, work / f"gptq-w{bits}", f"gptq-w{bits}", group_size=args.group_size,
                                  desc_act=args.desc_act,
                                  calibration=texts, calibration_record=record, num_samples=args.samples,
                                  max_length=args.max_length)
        info = json.loads((out / "mga_quantize.json").read_text())
        gptq = compare(full, out, heldout, work / f"compare-gptq-w{bits}.json", max_rows=len(heldout),
                       max_length=args.max_length, gen_tokens=16, gen_prompts=2)
        # GPTQModel computes in bf16 on CPU: score the full model and RTN in the GPTQ checkpoint's dtype too,
        # so that every rise is quantization error alone.
        dtype = getattr(torch, gptq["quantized"]["dtype"])
        full_ppl = perplexity(AutoModelForCausalLM.from_pretrained(full, dtype=dtype), examples, "perplexity full")
        model = AutoModelForCausalLM.from_pretrained(full, dtype=torch.float32)
        rtn_started = time.perf_counter()
        rtn_quantize_(model, bits, args.group_size)
        rtn_seconds = time.perf_counter() - rtn_started
        rtn_ppl = perplexity(model.to(dtype), examples, f"perplexity rtn-w{bits}")
        results[bits] = {"full": full_ppl, "gptq": gptq["quantized"]["perplexity"], "rtn": rtn_ppl, "dtype": str(dtype),
                         "linear_over_fp16": gptq["quantized"]["linear_bytes_over_fp16"],
                         "gptq_s": info["timings"]["quantize_s"], "rtn_s": rtn_seconds,
                         "wall_s": time.perf_counter() - started}
    if args.w8a8:
        out = quantize_checkpoint(full, work / "w8a8", "w8a8", calibration=texts, calibration_record=record,
                                  num_samples=args.samples, max_length=args.max_length)
        w8a8 = compare(full, out, heldout, work / "compare-w8a8.json", max_rows=len(heldout),
                       max_length=args.max_length, gen_tokens=16, gen_prompts=2)

    full_model = AutoModelForCausalLM.from_pretrained(full)
    names = linear_layer_names(full_model)
    params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                 for n, m in full_model.named_modules() if n in names)
    print(f"\nqwen2-{args.size} trained {args.steps} steps; {params / 1e6:.2f}M linear params "
          f"({checkpoint_sizes(full, names, params)['linear_bytes_over_fp16']}x fp16 as stored); "
          f"group size {args.group_size}{', act-order' if args.desc_act else ''}; {len(texts)} calibration rows x <= {args.max_length} tokens; "
          f"held-out: {len(heldout)} windows of unseen documents, {sum(len(ex[0]) for ex in examples)} tokens; "
          f"perplexities in {results[4]['dtype']}")
    print(f"{'bits':>4} {'full ppl':>9} {'GPTQ ppl':>9} {'RTN ppl':>9} {'GPTQ rise':>10} {'RTN rise':>9} "
          f"{'rise ratio':>10} {'linear/fp16':>11} {'GPTQ s':>7} {'RTN s':>6}")
    for bits, r in results.items():
        g_rise, r_rise = r["gptq"] / r["full"] - 1, r["rtn"] / r["full"] - 1
        ratio = g_rise / r_rise if r_rise > 0 else float("nan")
        print(f"{bits:>4} {r['full']:>9.3f} {r['gptq']:>9.3f} {r['rtn']:>9.3f} {g_rise:>+10.3%} {r_rise:>+9.3%} "
              f"{ratio:>10.3f} {r['linear_over_fp16']:>11.3f} {r['gptq_s']:>7.1f} {r['rtn_s']:>6.2f}")
    r4 = results[4]
    ratio4 = (r4["gptq"] / r4["full"] - 1) / max(r4["rtn"] / r4["full"] - 1, 1e-12)
    print(f"targets: GPTQ-4 rise / RTN-4 rise = {ratio4:.3f} (<= 0.5: {'met' if ratio4 <= 0.5 else 'MISSED'}); "
          f"4-bit linear bytes / fp16 = {r4['linear_over_fp16']:.3f} "
          f"(<= 0.3: {'met' if r4['linear_over_fp16'] <= 0.3 else 'MISSED'})")
    if args.w8a8:
        q = w8a8["quantized"]
        print(f"w8a8: ppl {q['perplexity']:.3f} (rise {q['perplexity'] / w8a8['full']['perplexity'] - 1:+.3%}), "
              f"linear/fp16 {q['linear_bytes_over_fp16']:.3f}, "
              f"quantize {json.loads((work / 'w8a8' / 'mga_quantize.json').read_text())['timings']['quantize_s']:.1f}s")


if __name__ == "__main__":
    main()
