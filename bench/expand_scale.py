"""Documents/s of `mga expand` on Ray Data at 1 and 2 workers, with the local executor as reference.

    python bench/expand_scale.py [--docs 128] [--max-new-tokens 64] [--batch-size 8]

SLM-2 (five rewrite calls per document, the bulk of the paper's GPU budget) is the tiny transformers model;
SLM-1 (one pairs call per document) is the loopback OpenAI-compatible server answering valid pairs JSON at
no latency, because the tiny random-weight model cannot write JSON. Ray runs in local mode with
`num_cpus=workers`; Ray's own start-up is left out of the timed part (printed apart), actor start-up and
model loading are in it. Targets: Ray with 2 workers >= 1.8x Ray with 1 worker end to end, Ray with 1 worker
>= 0.9x the local executor. The workload must be big enough that the fixed costs (actors, model loading) are
small next to generation: the output says how big it was and where the time went: fixed time and time per
document, from a second workload a quarter the size (wall = fixed + per document x documents), model loading
measured apart, and the time outside Ray (chunking, cleaning, writing the outputs). Measure on an idle machine
with at least 2 free cores: the load average is printed; a busy machine makes 2 workers look worse.
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


def run(corpus: Path, out: Path, model: Path, server: FakeOpenAI, args, **kwargs) -> dict[str, float]:
    """Seconds end to end, and the part spent outside Ray (chunking before, cleaning and writing after)."""
    started = time.perf_counter()
    stats = expand_corpus(
        corpus, out, pairs_model="slm-pairs", rewrite_model=str(model), pairs_backend="openai",
        rewrite_backend="transformers", base_url=server.url, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, show=False, **kwargs,
    )
    wall = time.perf_counter() - started
    assert stats["generated"]["rewrites"] == stats["rewrites"] == 5 * stats["documents"], stats
    ray_stats = stats.get("ray", {})
    inside = ray_stats.get("startup_s", 0.0) + ray_stats.get("generate_s", 0.0)
    return {"docs": stats["documents"], "wall": wall, "outside": wall - inside if ray_stats else None}


def model_load_s(model: Path) -> float:
    """Seconds to load the tiny SLM once (each Ray actor pays this; the local executor too, once)."""
    from mga.distill.generate.local import LocalGenerator

    started = time.perf_counter()
    LocalGenerator(str(model), batch_size=1)
    return time.perf_counter() - started


def fit(small: dict[str, float], big: dict[str, float]) -> tuple[float, float]:
    """(fixed seconds, seconds per document) of wall = fixed + per_doc * documents, from two workload sizes."""
    per_doc = (big["wall"] - small["wall"]) / (big["docs"] - small["docs"])
    return big["wall"] - per_doc * big["docs"], per_doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=128, help="documents of the big workload (the small one: a quarter)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--local-threads", type=int, default=1,
                        help="torch threads of the local executor (Ray actors use 1 each)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import ray
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="mga-expand-bench-"))
    docs = sorted(iter_rows(default_corpus_path()), key=lambda r: len(r["text"]))[: args.docs]
    subsets = {"small": docs[::4], "big": docs}  # every 4th document: the same mix of lengths, a quarter the work
    sizes = {name: len(rows) for name, rows in subsets.items()}
    corpora = {name: write_rows(tmp / f"corpus.{name}.jsonl", rows) for name, rows in subsets.items()}
    model = build_tiny_model(tmp / "tiny", arch="qwen2", size="xs", seed=0)
    server = FakeOpenAI(lambda request: Reply(content=PAIRS)).start()
    results: dict[str, dict[str, dict[str, float]]] = {}
    load_s = model_load_s(model)
    local_name = f"local ({args.local_threads} torch thread{'s' * (args.local_threads > 1)})"
    try:
        for name, c in corpora.items():  # each size through every executor in turn: a load drift hits all alike
            threads = torch.get_num_threads()
            torch.set_num_threads(args.local_threads)
            results.setdefault(local_name, {})[name] = run(c, tmp / f"local-{name}", model, server, args)
            torch.set_num_threads(threads)
            for workers in (1, 2):
                started = time.perf_counter()
                ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
                print(f"ray.init(num_cpus={workers}): {time.perf_counter() - started:.1f} s (not timed)", flush=True)
                try:
                    results.setdefault(f"ray-{workers}", {})[name] = run(
                        c, tmp / f"ray-{workers}-{name}", model, server, args, executor="ray", workers=workers)
                finally:
                    ray.shutdown()
    finally:
        server.stop()
    print(f"\nworkload: {sizes['big']} documents = {sizes['big']} pairs calls + {5 * sizes['big']} rewrites of <= "
          f"{args.max_new_tokens} new tokens (and a small one of {sizes['small']} documents, to split fixed from "
          f"per-document time), batch {args.batch_size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"at the end; model load {load_s:.2f} s (measured apart; each Ray actor pays it)")
    rates = {}
    for name, r in results.items():
        fixed, per_doc = fit(r["small"], r["big"])
        rates[name] = r["big"]["docs"] / r["big"]["wall"]
        outside = r["big"]["outside"]
        where = f", outside Ray (chunking, cleaning, writing) {outside:.1f} s" if outside is not None else ""
        print(f"  {name:24s} {rates[name]:6.3f} documents/s end to end ({r['big']['wall']:.1f} s): fixed "
              f"{fixed:.1f} s (start-up, actors, model load), {per_doc:.2f} s per document (generation){where}")
    one, two, local = rates["ray-1"], rates["ray-2"], rates[local_name]
    per_doc = {name: fit(r["small"], r["big"])[1] for name, r in results.items()}
    print(f"  ray 2 workers / ray 1 worker: {two / one:.2f}x end to end (target >= 1.8x), "
          f"{per_doc['ray-1'] / per_doc['ray-2']:.2f}x per document (the limit for big workloads)")
    print(f"  ray 1 worker / local executor: {one / local:.2f}x end to end (target >= 0.9x), "
          f"{per_doc[local_name] / per_doc['ray-1']:.2f}x per document")
    print(f"  ray 2 workers / local executor: {two / local:.2f}x end to end")


if __name__ == "__main__":
    main()
