"""What the corpus quality monitors (`mga.judge.monitors`) cost beside the rest of `mga expand`, in one run.

Run: `nice -n 19 python bench/monitors_cost.py [rewrites] [small] [large]` (default 300 10000 100000).

Time, per 1,000 rewrites, on a shard written as the generators write it (chunks, pairs and rewrite rows with
their digests, in a temporary folder), with no model generating anything:
- the monitors: `rewrite_monitors` (copy rate, longest copy, length ratio, language; run where each rewrite
  row is built) plus what the filters add (MiniLM diversity per document, the MinHash near-duplicate index, the
  13-gram benchmark check against data/benchmarks/sample.jsonl), the latter taken as the difference of two
  `clean_and_count` passes over the same shard, one with every monitor filter on and one with all of them off;
  the near-duplicate index and the benchmark check are also timed on their own, diversity is the remainder;
- the rest of expansion: `clean_and_count` with the monitor filters off, i.e. what `mga expand` does after
  generation (index lookups, boilerplate cleaning, keyword coverage, token counting with the estimate,
  writing the Parquet shards and rejected.jsonl).
After a warm-up (py3langid's and MiniLM's models loaded, the row indexes built), the pass without monitors runs twice (the
faster counts) and the one with them once (the slow one: MiniLM on CPU). Wall and CPU seconds are both
printed: on a machine shared with other work, wall time grows with the others' load, CPU time much less.
Generation itself (the tool models) is not timed: it costs far more than either.

Memory: the only monitor state that grows with the corpus is the corpus-level one (`CorpusChecks`: the
near-duplicate index of kept rewrites and the benchmark 13-grams); per-document figures hold one document.
Its peak (tracemalloc) is measured while `small` and then `large` distinct rewrites go through it.

Texts: the 21 documents of the English reference set (data/reference/en.jsonl) as sources; each rewrite is
7 sentences drawn from the reference rewrites plus one sentence of its source (about the reference's median
length, 153 words), so every rewrite is distinct and English and shares some wording with its source.
"""

from __future__ import annotations

import random
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from mga.data import data_path
from mga.distill.core.io import write_rows
from mga.distill.core.schema import chunk_row, pairs_row, rewrite_jobs, rewrite_row
from mga.distill.core.tokens import token_counter
from mga.distill.expand.clean import clean_and_count
from mga.distill.expand.output import open_output
from mga.distill.expand.spec import ExpandSpec
from mga.judge.config import FilterConfig
from mga.judge.filters import CorpusChecks
from mga.judge.heuristic import embed
from mga.judge.monitors import rewrite_monitors, words
from mga.judge.reference import default_reference_path, reference_rewrite_rows

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
USAGE = {"finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 0}
BENCHMARK = str(data_path("benchmarks", "sample.jsonl"))
MONITORS_OFF = FilterConfig(max_copy_rate=1.0, min_diversity=0.0, reject_language_change=False,
                            near_duplicate_threshold=None)
MONITORS_ON = FilterConfig(benchmarks=[BENCHMARK])


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(words(s)) >= 4]


def documents(n: int, seed: int = 0) -> Iterator[tuple[str, list[dict[str, str]], list[str]]]:
    """(source, its five (genre, audience) pairs, five rewrites) for `n` documents, seeded."""
    reference = reference_rewrite_rows(default_reference_path("en"))
    by_doc: dict[str, list[dict]] = {}
    for row in reference:
        by_doc.setdefault(row["meta"]["docid"], []).append(row)
    docs = [(rows[0]["meta"]["raw_text"], [{"genre": r["meta"]["genre"], "audience": r["meta"]["audience"]}
                                           for r in rows]) for rows in by_doc.values()]
    pool = [s for row in reference for s in _sentences(row["content_split"])]
    rng = random.Random(seed)
    for i in range(n):
        source, pairs = docs[i % len(docs)]
        own = _sentences(source) or [source]
        yield source, pairs, [" ".join([*rng.sample(pool, 7), rng.choice(own)]) for _ in pairs]


class Clock:
    """Wall and CPU seconds (all threads of the process: MiniLM runs on several) of what runs inside `with`."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter() - self._started[0]
        self.cpu += time.process_time() - self._started[1]


def write_shard(work_dir: Path, n_docs: int, spec: ExpandSpec) -> tuple[Clock, list[str]]:
    """chunks.jsonl, pairs.jsonl and rewrites.jsonl as the generators leave them; returns the time spent in
    `rewrite_monitors` (what building each rewrite row adds) and the rewrites."""
    chunks, pairs, rewrites, clock = [], [], [], Clock()
    for d, (source, doc_pairs, texts) in enumerate(documents(n_docs)):
        chunk = chunk_row(f"doc-{d}", 0, source, "bench")
        chunks.append(chunk)
        prow = pairs_row(chunk["meta"], doc_pairs, status="ok", reason=None, model="bench", usage=USAGE,
                         raw_output=None, digest=spec.pairs_job(chunk["meta"]).digest)
        pairs.append(prow)
        for (_, meta), text in zip(rewrite_jobs(prow, spec.variant), texts):
            with clock:
                figures = rewrite_monitors(source, text)
            rewrites.append(rewrite_row({**meta, "monitors": figures}, text, variant=spec.variant, status="ok",
                                        reason=None, model="bench", usage=USAGE,
                                        digest=spec.rewrite_job(meta).digest))
    for name, rows in (("chunks", chunks), ("pairs", pairs), ("rewrites", rewrites)):
        write_rows(work_dir / f"{name}.jsonl", rows)
    return clock, [row["content_split"] for row in rewrites]


def clean_pass(work_dir: Path, spec: ExpandSpec, cfg: FilterConfig) -> tuple[Clock, dict]:
    """The time of one `clean_and_count` over the shard (as `mga expand` runs it), and its stats."""
    output = open_output(work_dir, "parquet", shard_rows=100_000, shard_bytes=512 * 2**20)
    with Clock() as clock:
        stats = clean_and_count(work_dir, spec, output, min_keyword_coverage=0.05, count_tokens=token_counter(None),
                                filter_cfg=cfg)
    return clock, stats


def corpus_checks(texts: list[str]) -> tuple[Clock, Clock]:
    """The time of the near-duplicate index and of the benchmark check over the rewrites, on their own."""
    corpus, near, bench = CorpusChecks(MONITORS_ON), Clock(), Clock()
    for i, text in enumerate(texts):
        with bench:
            corpus.benchmarks.matches(text)
        with near:
            corpus.near.check_and_add(str(i), text)
    return near, bench


def time_expansion(n_rewrites: int) -> None:
    spec = ExpandSpec(pairs_model="bench", rewrite_model="bench", pairs_backend="openai", rewrite_backend="openai")
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        rewrite_monitors("A warm-up sentence.", "A warm-up sentence.")  # py3langid's model loaded once
        per_rewrite, texts = write_shard(work_dir, n_rewrites // 5, spec)
        clean_pass(work_dir, spec, MONITORS_OFF)  # warm-up: the row indexes are built once
        embed(["warm-up"])  # MiniLM loaded once
        rest = min((clean_pass(work_dir, spec, MONITORS_OFF)[0] for _ in range(2)), key=lambda c: c.wall)
        on, stats = clean_pass(work_dir, spec, MONITORS_ON)
    near, bench = corpus_checks(texts)
    per_k = 1000 / stats["rewrites"]
    lines = {"rest of expansion (clean, coverage, count tokens, write)": (rest.wall, rest.cpu),
             "monitors per rewrite (copy rate, longest copy, language)": (per_rewrite.wall, per_rewrite.cpu),
             "monitors in the filter, all (on pass - off pass)": (on.wall - rest.wall, on.cpu - rest.cpu),
             "  of which near-duplicate index (MinHash LSH)": (near.wall, near.cpu),
             "  of which benchmark 13-grams": (bench.wall, bench.cpu),
             "  of which diversity (MiniLM, distinct-2; the remainder)": (on.wall - rest.wall - near.wall - bench.wall,
                                                                          on.cpu - rest.cpu - near.cpu - bench.cpu)}
    monitors = [per_rewrite.wall + on.wall - rest.wall, per_rewrite.cpu + on.cpu - rest.cpu]
    print(f"time per 1,000 rewrites ({stats['rewrites']:,} rewrites of {stats['documents']:,} documents; kept "
          f"{stats['expanded']:,}, rejected {stats['rejected_by_reason']}):")
    print(f"  {'':58} {'wall s':>9} {'CPU s':>9}")
    for name, (wall, cpu) in lines.items():
        print(f"  {name:58} {wall * per_k:9.2f} {cpu * per_k:9.2f}")
    print(f"  {'monitors, all':58} {monitors[0] * per_k:9.2f} {monitors[1] * per_k:9.2f}")
    print(f"  {'ratio monitors / rest of expansion':58} {monitors[0] / rest.wall:9.1f} {monitors[1] / rest.cpu:9.1f}")
    no_minilm = [per_rewrite.wall + near.wall + bench.wall, per_rewrite.cpu + near.cpu + bench.cpu]
    print(f"  {'ratio without diversity (min_diversity: 0) / rest':58} {no_minilm[0] / rest.wall:9.1f} "
          f"{no_minilm[1] / rest.cpu:9.1f}")


def peak_memory(n_rewrites: int) -> float:
    """Peak MB (tracemalloc) of the corpus-level checks while `n_rewrites` distinct rewrites go through them."""
    cfg = MONITORS_ON
    texts = (text for _, _, rewrites in documents(n_rewrites // 5, seed=1) for text in rewrites)
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    corpus = CorpusChecks(cfg)
    for i, text in enumerate(texts):  # as the filter checks a rewrite (mga.judge.filters._monitor_reason)
        corpus.benchmarks.matches(text)
        corpus.near.check_and_add(f"doc-{i // 5}#0#{i % 5}#base", text)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert len(corpus.near.minhashes) > 0.99 * n_rewrites, "the texts must be distinct for the index to grow"
    return peak / 1e6


if __name__ == "__main__":
    n_time, small, large = [int(a) for a in sys.argv[1:]] + [300, 10_000, 100_000][len(sys.argv[1:]):]
    time_expansion(n_time)
    peak_memory(50)  # warm-up: imports and caches are not the index's memory
    memory = {n: peak_memory(n) for n in (small, large)}
    print("peak memory of the corpus-level checks (near-duplicate index + benchmark 13-grams):")
    for n, mb in memory.items():
        print(f"  {n:>8,} rewrites: {mb:8.1f} MB, {1e3 * mb / n:6.2f} KB per rewrite")
    print(f"  ratio {large:,} / {small:,}: memory {memory[large] / memory[small]:.2f}x for {large / small:.0f}x rewrites")
