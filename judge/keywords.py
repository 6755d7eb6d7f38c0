"""Keywords of a document and how many of them a rewrite keeps (the paper's keyword-coverage filter).

How text becomes terms is the language pack's `segmentation` (data/prompts/<lang>/language.yaml): words
with a stop-word list and suffix folds (English: 3+ letter words, scikit-learn's stop words, plural fold),
or overlapping character n-grams for scripts without spaces (Chinese: Han bigrams; Japanese: kanji bigrams,
with katakana loanwords and Latin words kept whole), whose matching is robust without a word segmenter. A document's keywords are its
`top_k` most frequent terms; coverage is the share of them found anywhere in the rewrite.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import cache

from mga.distill.core.language import LanguagePack, language_pack

TOP_K = 40


def segmenter(pack: LanguagePack) -> Callable[[str], list[str]]:
    """The pack's text -> terms function (compiled once per pack by the caller)."""
    seg = pack.segmentation
    stop = frozenset(w.lower() if seg.lowercase else w for w in pack.stop_words)
    if seg.method == "char_ngrams":
        n = seg.n
        runs = re.compile(f"({seg.word_pattern})|{seg.pattern}" if seg.word_pattern else f"()|{seg.pattern}", re.UNICODE)

        def ngrams(text: str) -> list[str]:
            grams = []
            for match in runs.finditer(text):
                run = match.group(0)
                if match.group(1):  # a whole word
                    word = run.lower() if seg.lowercase else run
                    if word not in stop:
                        grams.append(word)
                    continue
                grams += [run[i : i + n] for i in range(len(run) - n + 1) if not set(run[i : i + n]) <= stop]
            return grams

        return ngrams
    pattern = re.compile(seg.pattern, re.UNICODE)
    folds = [(f.suffix, f.min_length, tuple(f.unless)) for f in seg.suffix_folds]

    def fold(word: str) -> str:
        for suffix, min_length, unless in folds:
            if len(word) > min_length and word.endswith(suffix) and not word.endswith(unless):
                return word[: -len(suffix)]
        return word

    def words(text: str) -> list[str]:
        found = (m.lower() if seg.lowercase else m for m in pattern.findall(text))
        return [fold(w) for w in found if w not in stop]

    return words


@cache
def _segmenter(language: str) -> Callable[[str], list[str]]:
    return segmenter(language_pack(language))


@cache
def stop_words(language: str = "en") -> frozenset[str]:
    """The pack's stop words (words) or stop characters (char_ngrams), lower-cased where the pack lower-cases."""
    pack = language_pack(language)
    return frozenset(w.lower() if pack.segmentation.lowercase else w for w in pack.stop_words)


def terms(text: str, language: str = "en") -> list[str]:
    """The text's content terms in order (with repeats)."""
    return _segmenter(language)(text)


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
