"""Memory of the near-duplicate index (`mga.judge.monitors.NearDuplicateIndex`) at two corpus sizes.

Run: `python bench/monitors_memory.py [small] [large]` (default 2000 10000). Texts are synthetic word
salads of ~120 words (distinct, so every one is indexed); tracemalloc counts what the index holds.
"""

from __future__ import annotations

import random
import sys
import tracemalloc

from mga.judge.monitors import NearDuplicateIndex


def measure(n: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    texts = [" ".join(rng.choices(vocab, k=120)) for _ in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = NearDuplicateIndex()
    for i, text in enumerate(texts):
        index.check_and_add(str(i), text)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / 1e6


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [2000, 10000]
    measure(50)  # warm-up: the first call's imports and caches are not the index's memory
    for n in sizes:
        mb = measure(n)
        print(f"{n:>8,} rewrites: {mb:8.1f} MB, {1e3 * mb / n:6.2f} KB per rewrite")
