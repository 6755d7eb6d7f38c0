"""Stage-1 answers of SmolLM2-135M-Instruct with and without structured output, untrained and briefly trained.

    nice -n 19 python bench/structured_pairs.py [--out bench/.cache/structured] [--docs 10] [--train-docs 12]

The student (`mga base-model smollm2-135m`, f16 GGUF export) answers the stage-1 prompt for `--docs` held-out
English documents of the sample corpus (the shortest of 500-3,000 characters among those without reference
labels, data/reference/en.jsonl) through the toolkit's `label_pairs` and the llama.cpp backend: greedy, one attempt, max_tokens 400 (the
quickstart's cap), with `structured_output: off` and `json_schema` (the stage-1 schema as a llama.cpp grammar).
Then the same after a short SFT on the teacher pairs of `--train-docs` reference documents (data/reference/
en.pairs.jsonl, the shortest; batch 1, gradient accumulation 2, lr 2e-4, one epoch: 12 documents are 6 optimizer
steps, as tests/test_real_student.py trains).
Printed per condition: answers that are one JSON document, answers `parse_pairs` accepts (five distinct pairs),
answers cut at max_tokens, answers that open the stage-1 JSON, each with its Wilson 95% interval. The answers stay in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.cli.main import configure_environment  # noqa: E402

configure_environment()

MAX_TOKENS = 400
OPENS = re.compile(r'\s*\{\s*"pairs"\s*:\s*\[\s*\{\s*"genre"')  # the stage-1 JSON begins (tests/test_real_student.py)


def held_out_documents(count: int) -> list[dict]:
    from mga.distill.core.config import default_corpus_path
    from mga.distill.core.io import read_rows
    from mga.judge.reference import default_reference_path, reference_pairs_rows

    labelled = {row["meta"]["docid"] for row in reference_pairs_rows(default_reference_path("en"))}
    rows = sorted((r for r in read_rows(default_corpus_path()) if r["id"] not in labelled
                   and 500 <= len(r["text"]) <= 3000), key=lambda r: len(r["text"]))
    return rows[:count]


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def measure(gguf: Path, chunks: Path, out: Path, mode: str) -> dict:
    from mga.distill.core.config import GenerationParams
    from mga.distill.core.io import read_rows
    from mga.distill.generate.local import LocalGenerator
    from mga.distill.label.labeling import label_pairs
    from mga.judge.pairs_check import parse_pairs
    from mga.judge.scores import wilson_ci

    started = time.perf_counter()
    params = GenerationParams(temperature=0.0, max_tokens=MAX_TOKENS, structured_output=mode)
    label_pairs(chunks, out, LocalGenerator(str(gguf), backend="llamacpp"), params=params, max_validation_attempts=1)
    rows = read_rows(out)
    texts = [(row.get("raw_output") or "") for row in rows]
    counts = {"json": sum(is_json(t) for t in texts), "five_distinct": sum(parse_pairs(t, 5)[0] is not None for t in texts),
              "cut": sum(row.get("finish_reason") == "length" for row in rows),
              "opens": sum(OPENS.match(t) is not None for t in texts)}
    n = len(rows)
    return {"mode": mode, "n": n, **{k: [v, *(round(x, 2) for x in wilson_ci(v, n))] for k, v in counts.items()},
            "reasons": sorted({parse_pairs(t, 5)[1] or "ok" for t in texts}), "wall_s": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".cache" / "structured")
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--train-docs", type=int, default=12)
    args = parser.parse_args()

    from mga.distill.core.config import CorpusConfig
    from mga.distill.core.io import read_rows, write_rows
    from mga.distill.label.chunk import chunk_corpus
    from mga.distill.train.base_model import build_base_model
    from mga.distill.train.config import TrainConfig
    from mga.distill.train.launch import train
    from mga.distill.train.sft_data import build_sft_datasets
    from mga.judge.reference import default_reference_path, reference_pairs_rows
    from mga.quantize.gguf import local_gguf

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    student = build_base_model("smollm2-135m", out / "smollm2-135m")
    corpus = write_rows(out / "heldout.corpus.jsonl", held_out_documents(args.docs))
    chunks = out / "heldout.chunks.jsonl"
    chunk_corpus(corpus, chunks, CorpusConfig())
    print(f"{len(read_rows(chunks))} held-out chunks", flush=True)

    by_length = sorted(reference_pairs_rows(default_reference_path("en")), key=lambda r: len(r["meta"]["raw_text"]))
    train_file, _ = build_sft_datasets(write_rows(out / "kept.jsonl", by_length[: args.train_docs]), "pairs",
                                       out / "sft", eval_fraction=0.0)
    cfg = TrainConfig(student=str(student), eval_fraction=0.0, learning_rate=2e-4, num_train_epochs=1,
                      per_device_train_batch_size=1, gradient_accumulation_steps=2, max_length=1536, logging_steps=1,
                      save_strategy="no", report_to="none", use_cpu=True, bf16=False)
    started = time.perf_counter()  # a finished training is found and reused by `train`
    trained = train(train_file, None, out / "trained", cfg, student=str(student), stage="pairs")
    print(f"trained on {args.train_docs} documents in {time.perf_counter() - started:.0f} s -> {trained}", flush=True)

    results = {}
    for name, checkpoint in (("untrained", student), ("trained", trained)):
        gguf = local_gguf(checkpoint)
        for mode in ("off", "json_schema"):
            results[f"{name}/{mode}"] = measure(gguf, chunks, out / f"pairs.{name}.{mode}.jsonl", mode)
            print(name, json.dumps(results[f"{name}/{mode}"]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
