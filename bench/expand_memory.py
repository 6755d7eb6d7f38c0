"""Peak memory and time per document of `mga expand` at two corpus sizes, and of the corpus stage alone.

    python bench/expand_memory.py [--small 500] [--large 4000] [--corpus-small 125000] [--corpus-large 1000000]

Expansion runs through a loopback OpenAI-compatible server (`tests/fake_openai.py`, in this process) that
answers valid pairs JSON for SLM-1 and echoes the document for SLM-2, so the toolkit's own memory and time
are measured, not a model's. The corpus stage (read, check ids, chunk, write; and a `sample_size` sample of
1,000) runs alone on small documents. Every run is a fresh child process that reports its own peak RSS.
The larger run of each pair is >= 8x the smaller; targets (issue 16): peak memory larger/smaller <= 1.2x and
time per document within 10%. Before issue 16, expansion took 52 s and 310 MB for 2,000 documents and 178 s
and 585 MB for 8,000 (about 46 KB more per document), and sampling 1,000 documents of 278 MB of JSONL held
467 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = json.dumps({"genres": ["poem", "essay", "letter", "dialogue", "story"],
                    "audiences": ["children", "teachers", "skeptics", "students", "parents"]})
WORDS = ("the of and to in is was for on that with as by at from his it an were are which this be or has "
         "river stone market winter engine garden library signal harbor meadow").split()


def write_corpus(path: Path, n: int, words: int) -> Path:
    rng = random.Random(n)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(words))
            f.write(json.dumps({"id": f"doc-{i}", "text": f"Document {i}. {text}."}) + "\n")
    return path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process; prints a JSON line."""
    from mga.distill.core.config import CorpusConfig
    from mga.distill.core.console import console
    from mga.distill.expand.expand import expand_corpus
    from mga.distill.label.chunk import chunk_corpus

    console.quiet = True
    started = time.perf_counter()  # after the imports: their fixed cost is not per document
    if args.child == "expand":
        stats = expand_corpus(args.corpus, args.out, pairs_model="slm-pairs", rewrite_model="slm-rewrite",
                              backend="openai", base_url=args.base_url, max_new_tokens=256, show=False)
        documents = stats["documents"]
        assert stats["rewrites"] == 5 * documents, stats
    else:
        cfg = CorpusConfig(sample_size=args.sample_size)
        chunk_corpus(args.corpus, Path(args.out) / "chunks.jsonl", cfg)
        documents = args.docs
    print(json.dumps({"wall_s": time.perf_counter() - started, "peak_mb": _peak_mb(), "documents": documents}))


def measure(kind: str, corpus: Path, out: Path, docs: int, repeats: int = 1, **extra: str) -> dict:
    """The run in fresh processes, `repeats` times into fresh folders: the fastest wall time, the highest peak."""
    cmd = [sys.executable, __file__, "--child", kind, "--corpus", str(corpus), "--docs", str(docs)]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    runs = []
    for i in range(repeats):
        done = subprocess.run([*cmd, "--out", f"{out}-{i}"], check=True, capture_output=True, text=True, env=env)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {"wall_s": min(r["wall_s"] for r in runs), "peak_mb": max(r["peak_mb"] for r in runs)}
    result["ms_per_doc"] = 1000 * result["wall_s"] / docs
    return result


def compare(name: str, small: tuple[int, dict], large: tuple[int, dict]) -> tuple[float, float]:
    (n_small, a), (n_large, b) = small, large
    memory, per_doc = b["peak_mb"] / a["peak_mb"], b["ms_per_doc"] / a["ms_per_doc"]
    print(f"\n{name}")
    print(f"  {'documents':>12} {'wall s':>9} {'ms/doc':>9} {'peak MB':>9}")
    for n, r in ((n_small, a), (n_large, b)):
        print(f"  {n:>12,} {r['wall_s']:>9.1f} {r['ms_per_doc']:>9.3f} {r['peak_mb']:>9.1f}")
    print(f"  ratios large/small ({n_large / n_small:.0f}x the documents): peak memory {memory:.2f}x "
          f"(target <= 1.2x), time per document {per_doc:.2f}x (target within 10%: 0.90-1.10)")
    return memory, per_doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500, help="documents of the smaller expansion")
    parser.add_argument("--large", type=int, default=4000, help="documents of the larger expansion (>= 8x)")
    parser.add_argument("--corpus-small", type=int, default=125_000)
    parser.add_argument("--corpus-large", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=60, help="words per expanded document")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each expansion (the corpus stage: 2)")
    parser.add_argument("--skip-expand", action="store_true")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--child", choices=["expand", "corpus"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--sample-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from tests.fake_openai import FakeOpenAI, Reply

    def tool_models(request: dict) -> Reply:
        if request["model"] == "slm-pairs":
            return Reply(content=PAIRS)
        return Reply(content=request["messages"][-1]["content"][-2000:])

    print(f"bench/expand_memory.py: {os.cpu_count()} CPUs; each run a fresh process (peak RSS of that process)")
    with tempfile.TemporaryDirectory(prefix="mga-bench-") as tmp:
        tmp = Path(tmp)
        if not args.skip_expand:
            with FakeOpenAI(tool_models) as server:
                runs = []
                for n in (args.small, args.large):
                    corpus = write_corpus(tmp / f"expand-{n}.jsonl", n, args.words)
                    os.sync()  # the corpus written, not flushed during the measured run
                    runs.append((n, measure("expand", corpus, tmp / f"out-{n}", n, args.repeats, base_url=server.url)))
            compare("mga expand through a loopback OpenAI-compatible server (1 pairs + 5 rewrite calls a document)",
                    *runs)
            print("  before issue 16 (the issue's figures): 2,000 docs 310 MB, 8,000 docs 585 MB: peak memory 1.89x")
        if not args.skip_corpus:
            sizes = (args.corpus_small, args.corpus_large)
            corpora = {n: write_corpus(tmp / f"corpus-{n}.jsonl", n, 12) for n in sizes}
            os.sync()
            for sample in (None, 1000):
                runs = [(n, measure("corpus", path, tmp / f"chunks-{n}", n, max(2, args.repeats),
                                    **({"sample_size": sample} if sample else {})))
                        for n, path in corpora.items()]
                what = "read, check ids, chunk, write" if sample is None else f"sample_size={sample}, read once"
                compare(f"corpus stage alone ({what}), small documents, best of {max(2, args.repeats)}", *runs)
            print("  before issue 16 (the issue's figures): sampling 1,000 documents of 278 MB of JSONL held 467 MB")


if __name__ == "__main__":
    main()
