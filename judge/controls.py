"""Controls that show whether a judge discriminates, judged alongside the real items (see docs/judge.md).

From a seeded sample of `judge.controls` documents, three rows per document. The sample is drawn from the
judged documents, topped up from the corpus (`donors`) when a stage judges fewer: a stage of three eval
documents would otherwise pass or fail on six negatives, where one unlucky score moves the share by 17 points.
- `positive`: the original given as its own rewrite. Limited Consistency must score it high.
- `other_document`: the rewrite replaced by another document of similar length (the one that shares the
  fewest keywords with the original among those nearest in length). It keeps no information point.
- `destroyed`: the original's layout, punctuation and function words kept, every content word (en: words
  of 3+ letters that are not stop words; zh: Han characters) replaced by one of the other document's and
  every digit changed. It looks like the original and keeps none of its information.
The two negatives must score low. Control rows are ordinary judged rows marked `control` with
`meta.pair_id = "control:<kind>"`: they go through the same judge, prompt and cache as the real items, and
every table, filter and SFT builder leaves them out (`mga.distill.core.schema.is_control`).
"""

from __future__ import annotations

import bisect
import random
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

from mga.distill.core.schema import (
    OK,
    chunk_key,
    is_control,
    rewrite_row,
    unjudgeable_reason,
)
from mga.judge.config import JudgeConfig
from mga.judge.keywords import keywords, stop_words, terms
from mga.judge.scores import summarize

EXPECT = {"positive": "high", "other_document": "low", "destroyed": "low"}
NEGATIVE = tuple(kind for kind, expect in EXPECT.items() if expect == "low")
DONOR_CANDIDATES = 50  # documents nearest in length among which the least related one is the donor
_TOKEN = re.compile(r"[\u4e00-\u9fff]|[^\W\d_]+|\d", re.UNICODE)


def _content(token: str, language: str) -> bool:
    if token.isdigit():
        return False
    if "\u4e00" <= token[0] <= "\u9fff":
        return token not in stop_words("zh")
    return len(token) >= 3 and token.lower() not in stop_words("en")


def destroy(text: str, donor: str, language: str = "en", seed: int = 0) -> str:
    """`text` with every content token replaced by one of `donor`'s (shuffled, those absent from `text`
    first) and every digit changed; punctuation, spacing and function words stay."""
    rng = random.Random(seed)
    own = {t.lower() for t in _TOKEN.findall(text)}
    vocab = list(dict.fromkeys(t for t in _TOKEN.findall(donor) if _content(t, language)))
    fresh = [t for t in vocab if t.lower() not in own]
    words = fresh or vocab or ["lorem", "ipsum", "dolor"]
    rng.shuffle(words)
    han = [w for w in words if "\u4e00" <= w[0] <= "\u9fff"] or ["无"]
    latin = [w for w in words if not "\u4e00" <= w[0] <= "\u9fff"] or words
    count = {"han": 0, "latin": 0}

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.isdigit():
            return str((int(token) + rng.randint(1, 9)) % 10)
        if not _content(token, language):
            return token
        pool, kind = (han, "han") if "\u4e00" <= token[0] <= "\u9fff" else (latin, "latin")
        word = pool[count[kind] % len(pool)]
        count[kind] += 1
        if token.isupper() and len(token) > 1:
            return word.upper()
        return word[:1].upper() + word[1:] if token[:1].isupper() else word.lower()

    return _TOKEN.sub(swap, text)


def _donor(doc: dict[str, Any], by_length: list[tuple[int, str, dict[str, Any]]], language: str,
           vocabulary: Callable[[str], frozenset[str]]) -> dict[str, Any] | None:
    """Another document (another docid) of similar length sharing the fewest keywords with `doc`."""
    text = doc["meta"]["raw_text"]
    at = bisect.bisect_left(by_length, (len(text), ""))
    lo, hi = max(0, at - DONOR_CANDIDATES // 2), at + DONOR_CANDIDATES // 2

    def other(row: dict[str, Any]) -> bool:  # another document, not a copy of this one under another id
        return row["meta"]["docid"] != doc["meta"]["docid"] and row["meta"]["raw_text"].strip() != text.strip()

    others = [item for item in by_length[lo:hi] if other(item[2])] or [item for item in by_length if other(item[2])]
    near = [item for item in others if len(text) / 2 <= item[0] <= 2 * len(text)] or others
    if not near:
        return None
    wanted = keywords(text, language)

    def shared(item: tuple[int, str, dict[str, Any]]) -> tuple[int, int, str]:
        present = vocabulary(item[1])
        return sum(term in present for term in wanted), abs(item[0] - len(text)), item[1]

    return min(near, key=shared)[2]


def _control(row: dict[str, Any], kind: str, text: str, donor: dict[str, Any] | None) -> dict[str, Any]:
    return rewrite_row({**row["meta"], "pair_id": f"control:{kind}"}, text, variant=row.get("variant", "base"),
                       status=OK, reason=None, model="control", usage={"finish_reason": "stop"},
                       control={"kind": kind, "expect": EXPECT[kind], "donor": chunk_key(donor) if donor else None})


def control_rows(rows: Iterable[dict[str, Any]], n: int, *, seed: int = 0, language: str = "en",
                 donors: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Control rows for a seeded sample of `n` of the documents behind `rows`, topped up with documents of
    `donors` (rows with a `meta.raw_text`: the run's corpus chunks, say) when `rows` has fewer (none for 0).

    The negatives' other documents come from the same pool, so a file of few documents still finds an
    unrelated one."""
    docs: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not is_control(row) and unjudgeable_reason(row) is None:
            docs.setdefault(chunk_key(row), row)
    if n <= 0 or not docs:
        return []
    keys = sorted(docs)
    sample = sorted(random.Random(seed).sample(keys, min(n, len(keys))))
    pool = dict(docs)
    for row in donors:
        if (row.get("meta") or {}).get("raw_text"):
            pool.setdefault(chunk_key(row), row)
    extra = sorted(set(pool) - set(docs))
    top_up = sorted(random.Random(seed).sample(extra, min(n - len(sample), len(extra)))) if len(sample) < n else []
    docs.update({key: pool[key] for key in top_up})
    sample += top_up
    by_length = sorted((len(row["meta"]["raw_text"]), key, row) for key, row in pool.items())
    vocabulary = cache(lambda key: frozenset(terms(pool[key]["meta"]["raw_text"], language)))
    out = []
    for key in sample:
        doc = docs[key]
        out.append(_control(doc, "positive", doc["meta"]["raw_text"], None))
        donor = _donor(doc, by_length, language, vocabulary)
        if donor is not None:
            out.append(_control(doc, "other_document", donor["meta"]["raw_text"], donor))
            # seeded by the document, so every judged stage gives that document the same controls (cache hits)
            destroyed = destroy(doc["meta"]["raw_text"], donor["meta"]["raw_text"], language,
                                zlib.crc32(f"{seed}:{key}".encode()))
            out.append(_control(doc, "destroyed", destroyed, donor))
    return out


def with_controls(rows: Sequence[dict[str, Any]], n: int, *, seed: int = 0, language: str = "en",
                  donors: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The real rows (controls of an earlier judging dropped) followed by fresh control rows."""
    real = [row for row in rows if not is_control(row)]
    return real + control_rows(real, n, seed=seed, language=language, donors=donors)


def control_figures(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Scores of the control rows among judged `rows`: None when they hold no control (controls off)."""
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in EXPECT}
    for row in rows:
        if is_control(row) and row["control"].get("kind") in groups:
            groups[row["control"]["kind"]].append(row)
    if not any(groups.values()):
        return None
    positive = summarize(groups["positive"], include_controls=True)
    negative = summarize([r for kind in NEGATIVE for r in groups[kind]], include_controls=True)
    means = positive["mean_score"], negative["mean_score"]
    return {
        "documents": len(groups["positive"]),
        "positive": positive["total"],
        "negative": negative["total"],
        "positive_ge3": positive["rate_ge3"],
        "negative_le2": negative["le2"] if negative["total"] else None,
        "mean_positive": means[0],
        "mean_negative": means[1],
        "separation": None if None in means else round(means[0] - means[1], 3),
        "unscored": positive["unscored"] + negative["unscored"],
        "kinds": {kind: {k: v for k, v in summarize(g, include_controls=True).items() if not k.startswith("_")}
                  for kind, g in groups.items()},
    }


def control_verdict(rows: Iterable[dict[str, Any]], cfg: JudgeConfig | None = None) -> dict[str, Any] | None:
    """The control figures plus `passed` and the failed checks (`failures`); None when there are no controls."""
    cfg = cfg or JudgeConfig()
    figures = control_figures(rows)
    if figures is None:
        return None
    failures = []
    if not figures["negative"]:
        failures.append("no negative control (needs documents with at least two docids)")
    if figures["positive_ge3"] < 100 * cfg.min_positive_ge3:
        failures.append(f"positive controls scored >= 3: {figures['positive_ge3']:.0f}% < {100 * cfg.min_positive_ge3:.0f}%")
    if figures["negative_le2"] is not None and figures["negative_le2"] < 100 * cfg.min_negative_le2:
        failures.append(f"negative controls scored <= 2: {figures['negative_le2']:.0f}% < {100 * cfg.min_negative_le2:.0f}%")
    separation = figures["separation"]
    if separation is None or separation < cfg.min_control_separation:
        failures.append(f"mean score gap positive - negative: {_signed(separation)} < {cfg.min_control_separation:.2f}")
    thresholds = {"min_positive_ge3": cfg.min_positive_ge3, "min_negative_le2": cfg.min_negative_le2,
                  "min_control_separation": cfg.min_control_separation}
    return {**figures, "passed": not failures, "failures": failures, "thresholds": thresholds}


def verdict_line(verdict: dict[str, Any] | None) -> str:
    """One line for the console: the figures and PASSED / FAILED (or that the controls are off)."""
    if verdict is None:
        return "judge controls: off (judge.controls=0)"
    state = "PASSED" if verdict["passed"] else "FAILED (" + "; ".join(verdict["failures"]) + ")"
    return (f"judge controls on {verdict['documents']} documents: positives >= 3 {_pct(verdict['positive_ge3'])}, "
            f"negatives <= 2 {_pct(verdict['negative_le2'])}, mean gap {_signed(verdict['separation'])}: {state}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


CONTROLS_TITLE = "Judge health: controls"
CONTROLS_HEADER = ["judged stage", "documents", "positives ≥3", "negatives ≤2", "mean +", "mean −", "gap", "verdict"]


def _fmt_mean(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def controls_markdown(verdicts: dict[str, dict[str, Any] | None]) -> str:
    """The report section: one line of control figures per judged stage, the thresholds, how to read them."""
    from mga.distill.core.markdown import markdown_table

    checked = {stage: v for stage, v in verdicts.items() if v is not None}
    if not checked:
        return ("The judge's controls were off (`judge.controls: 0`) or the judged files carry none: nothing here "
                "shows that the judge tells a faithful rewrite from an unrelated text.")
    lines = [[stage, str(v["documents"]), f"{_pct(v['positive_ge3'])} of {v['positive']}",
              f"{_pct(v['negative_le2'])} of {v['negative']}", _fmt_mean(v["mean_positive"]),
              _fmt_mean(v["mean_negative"]), _signed(v["separation"]),
              "passed" if v["passed"] else "FAILED: " + "; ".join(v["failures"])] for stage, v in checked.items()]
    t = next(iter(checked.values()))["thresholds"]
    return "\n".join([
        markdown_table(CONTROLS_HEADER, lines), "",
        f"Thresholds: positives ≥3 at least {100 * t['min_positive_ge3']:.0f}%, negatives ≤2 at least "
        f"{100 * t['min_negative_le2']:.0f}%, mean gap at least {t['min_control_separation']:.2f} points. "
        "Positive control: the original given as its own rewrite. Negative controls: another document of similar "
        "length, and the original with every content word replaced and every digit changed. They are judged with "
        "the real items by the same judge and prompt, and enter no table and no SFT data. A judge that fails "
        "cannot tell a faithful rewrite from an unrelated text: the Rate(≥3) and Diff in the tables below say nothing.",
    ])


def failed_stages(verdicts: dict[str, dict[str, Any] | None]) -> list[str]:
    return [stage for stage, v in verdicts.items() if v is not None and not v["passed"]]
