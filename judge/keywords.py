"""Keywords of a document and how many of them a rewrite keeps (the paper's keyword-coverage filter).

English: lower-cased words of 3+ letters that are not stop words (scikit-learn's English list), with a
light plural fold (assertions -> assertion). Chinese (no spaces): bigrams of Han characters, whose
matching is robust without a word segmenter. A document's keywords are its `top_k` most frequent terms;
coverage is the share of them found anywhere in the rewrite.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

TOP_K = 40
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
_ZH_STOP = set("的了是在和与及或也就都而之其这那有为以于被把从对等个们中上下不")


@cache
def _english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def stop_words(language: str = "en") -> frozenset[str]:
    """Words (en) or Han characters (zh) that carry no content of their own."""
    return frozenset(_ZH_STOP) if language.startswith("zh") else _english_stop_words()


def _fold(word: str) -> str:
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str, language: str = "en") -> list[str]:
    """The text's content terms in order (with repeats)."""
    if language.startswith("zh"):
        grams = []
        for run in _HAN_RUN.findall(text):
            grams += [run[i : i + 2] for i in range(len(run) - 1) if not (set(run[i : i + 2]) <= _ZH_STOP)]
        return grams
    stop = _english_stop_words()
    return [_fold(w) for w in (m.lower() for m in _WORD.findall(text)) if w not in stop]


def keywords(text: str, language: str = "en", top_k: int = TOP_K) -> list[str]:
    """The `top_k` most frequent terms of the text (ties: first occurrence first)."""
    return [term for term, _ in Counter(terms(text, language)).most_common(top_k)]


def keyword_coverage(original: str, rewrite: str, language: str = "en", top_k: int = TOP_K) -> float:
    """Share (0..1) of the original's keywords that occur in the rewrite; 1.0 when it has none to lose."""
    wanted = keywords(original, language, top_k)
    if not wanted:
        return 1.0
    present = set(terms(rewrite, language))
    return sum(term in present for term in wanted) / len(wanted)
