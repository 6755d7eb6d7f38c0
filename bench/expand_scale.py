"""Documents/s of `mga expand` on Ray Data at 1 and 2 workers, with the local executor as reference.

    python bench/expand_scale.py [--docs 24] [--max-new-tokens 32] [--batch-size 4]

SLM-2 (five rewrite calls per document, the bulk of the paper's GPU budget) is the tiny transformers model;
SLM-1 (one pairs call per document) is the loopback OpenAI-compatible server answering valid pairs JSON at
no latency, because the tiny random-weight model cannot write JSON. Ray runs in local mode with
`num_cpus=workers`; Ray's own start-up is left out of the timed part (printed apart), actor start-up and
model loading are in it. Target: 2 workers >= 1.8x the documents/s of 1 worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mga.distill.core.config import default_corpus_path  # noqa: E402
from mga.distill.core.io import iter_rows, write_rows  # noqa: E402
from mga.distill.expand.expand import expand_corpus  # noqa: E402
from mga.distill.train.tiny_model import build_tiny_model  # noqa: E402

from tests.fake_openai import FakeOpenAI, Reply  # noqa: E402

PAIRS = json.dumps({"genres": ["poem", "essay", "letter", "dialogue", "story"],
                    "audiences": ["children", "teachers", "skeptics", "students", "parents"]})


def run(corpus: Path, out: Path, model: Path, server: FakeOpenAI, args, **kwargs) -> tuple[float, float | None]:
    """(documents/s end to end, documents/s from the first generated row to the last on Ray)."""
    started = time.perf_counter()
    stats = expand_corpus(
        corpus, out, pairs_model="slm-pairs", rewrite_model=str(model), pairs_backend="openai",
        rewrite_backend="transformers", base_url=server.url, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, show=False, **kwargs,
    )
    wall = time.perf_counter() - started
    assert stats["generated"]["rewrites"] == stats["rewrites"] == 5 * stats["documents"], stats
    steady = stats.get("ray", {}).get("generate_s")
    return stats["documents"] / wall, (stats["documents"] / steady if steady else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--local-threads", type=int, default=1,
                        help="torch threads of the local executor (Ray actors use 1 each)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import ray
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="mga-expand-bench-"))
    docs = sorted(iter_rows(default_corpus_path()), key=lambda r: len(r["text"]))[: args.docs]
    corpus = write_rows(tmp / "corpus.jsonl", docs)
    model = build_tiny_model(tmp / "tiny", arch="qwen2", size="xs", seed=0)
    server = FakeOpenAI(lambda request: Reply(content=PAIRS)).start()
    results: dict[str, tuple[float, float | None]] = {}
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(args.local_threads)
        results[f"local ({args.local_threads} torch thread{'s' * (args.local_threads > 1)})"] = run(
            corpus, tmp / "local", model, server, args)
        torch.set_num_threads(threads)
        for workers in (1, 2):
            started = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=200 * 1024**2,
                     log_to_driver=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
            print(f"ray.init(num_cpus={workers}): {time.perf_counter() - started:.1f} s (not timed)", flush=True)
            try:
                results[f"ray-{workers}"] = run(corpus, tmp / f"ray-{workers}", model, server, args,
                                                executor="ray", workers=workers)
            finally:
                ray.shutdown()
    finally:
        server.stop()
    print(f"\n{len(docs)} documents (1 pairs call + 5 rewrites of <= {args.max_new_tokens} tokens each), "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs")
    for name, (rate, steady) in results.items():
        extra = f"   steady state (first row to last): {steady:6.3f} documents/s" if steady else ""
        print(f"  {name:24s} {rate:6.3f} documents/s end to end{extra}")
    (one, one_steady), (two, two_steady) = results["ray-1"], results["ray-2"]
    print(f"  ray 2 workers / 1 worker: {two / one:.2f}x end to end, {two_steady / one_steady:.2f}x steady state "
          "(target >= 1.8x)")
    local = next(rate for name, (rate, _) in results.items() if name.startswith("local"))
    print(f"  ray 2 workers / local executor: {two / local:.2f}x end to end")


if __name__ == "__main__":
    main()
