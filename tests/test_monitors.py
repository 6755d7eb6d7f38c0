"""Corpus quality monitors and their filters, on text nobody here wrote: the shipped reference rewrites and sample
corpora, with planted cases (a verbatim copy, a near-duplicate, a rewrite in another language, a benchmark
paragraph), each of which must be flagged, while the reference rewrites mostly pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mga.data import data_path
from mga.distill.core.io import iter_rows, read_rows, write_rows
from mga.judge.config import FilterConfig
from mga.judge.filters import filter_file, filter_row
from mga.judge.monitors import (
    BenchmarkIndex,
    copied_spans,
    copy_rate,
    distinct_n,
    document_diversity,
    language_of,
    longest_copy,
    near_duplicates,
    quality_summary,
    rewrite_monitors,
    word_spans,
    words,
)
from mga.judge.reference import default_reference_path, reference_rewrite_rows

REFERENCE = reference_rewrite_rows(default_reference_path("en"))
BENCHMARK = data_path("benchmarks", "sample.jsonl")
# docs/expand.md states the false-flag rate measured on the reference rewrites (0 of 105) and this bound
MAX_FALSE_FLAG_RATE = 0.02
MONITOR_REASONS = {"high_copy_rate", "language_changed", "contaminated", "low_diversity", "near_duplicate"}


def _planted(base: dict, docid: str, text: str) -> dict:
    """A rewrite row of `base`'s source, as its own document (so the per-document diversity leaves it alone)."""
    return {**base, "meta": {**base["meta"], "docid": docid, "pair_id": 0}, "content_split": text}


def _zh_text() -> str:
    return next(r["text"] for r in iter_rows(data_path("sample", "corpus_zh.jsonl")) if len(r["text"]) > 40)


def test_a_verbatim_copy_has_copy_rate_1_and_its_whole_length_as_longest_span():
    source = REFERENCE[0]["meta"]["raw_text"]
    figures = rewrite_monitors(source, source)
    assert figures["copy_rate"] == 1.0 and figures["length_ratio"] == 1.0
    assert figures["longest_copy"]["words"] == len(words(source))
    assert max(r["copy_rate"] for r in map(lambda r: rewrite_monitors(r["meta"]["raw_text"], r["content_split"]),
                                            REFERENCE)) < 0.5


def test_the_longest_copied_span_points_at_the_copied_words_in_the_rewrite():
    source = REFERENCE[3]["meta"]["raw_text"]
    sentence = " ".join(source.split()[5:25])
    rewrite = f"To put it simply for you: {sentence} And that is all there is."
    span = longest_copy(source, rewrite)
    assert span["words"] == len(words(sentence))
    assert words(rewrite[span["start"]:span["end"]]) == words(sentence)
    assert longest_copy("alpha beta gamma", "delta epsilon") == {"words": 0, "start": 0, "end": 0}
    assert 0.0 < copy_rate(source, rewrite) < 1.0


def test_copied_spans_mark_the_words_the_copy_rate_counts():
    source = REFERENCE[3]["meta"]["raw_text"]
    sentence = " ".join(source.split()[5:25])
    rewrite = f"To put it simply for you: {sentence} And that is all there is."
    assert [words(rewrite[a:b]) for a, b in copied_spans(source, rewrite)] == [words(sentence)]
    spans = word_spans(source)
    assert copied_spans(source, source) == [(spans[0][1], spans[-1][2])]  # a verbatim copy: one run, all of it
    assert copied_spans(source, REFERENCE[3]["content_split"]) == [] == copied_spans(source, "")


def test_output_language_uses_the_language_packs_codes():
    assert language_of(REFERENCE[0]["content_split"]) == "en"
    assert language_of(_zh_text()) == "zh"
    ja = next(r["text"] for r in iter_rows(data_path("sample", "corpus_ja.jsonl")) if len(r["text"]) > 40)
    assert language_of(ja) == "ja"
    assert language_of("  ... ") is None


def test_diversity_of_identical_rewrites_is_near_zero_and_reference_documents_pass():
    text = REFERENCE[0]["content_split"]
    same = document_diversity([text] * 5)
    assert same["diversity"] < 0.01 and same["distinct_2"] == pytest.approx(distinct_n([text]) / 5, abs=0.01)
    documents: dict[str, list[str]] = {}
    for row in REFERENCE:
        documents.setdefault(row["meta"]["docid"], []).append(row["content_split"])
    lowest = min(document_diversity(texts)["diversity"] for texts in documents.values())
    assert lowest > FilterConfig().min_diversity
    assert document_diversity([text])["diversity"] is None  # one rewrite: no pair to compare


def test_near_duplicates_find_a_rewrite_with_one_word_changed_and_nothing_among_the_reference():
    texts = {f"r{i}": r["content_split"] for i, r in enumerate(REFERENCE)}
    assert near_duplicates(texts) == {}
    changed = texts["r7"].replace(" the ", " a ", 1)
    assert changed != texts["r7"]
    assert near_duplicates({**texts, "planted": changed}) == {"planted": "r7"}


def test_benchmark_13_grams_find_a_pasted_paragraph_and_nothing_in_the_reference():
    index = BenchmarkIndex([BENCHMARK])
    paragraph = json.loads(BENCHMARK.read_text().splitlines()[4])
    hit = index.matches(f"{REFERENCE[2]['content_split']}\n\n{paragraph['text']}")
    assert hit["ngrams"] == len(words(paragraph["text"])) - 12 and hit["item"] == f"sample.jsonl:{paragraph['id']}"
    assert all(index.matches(r["content_split"])["ngrams"] == 0 for r in REFERENCE)


def test_filters_flag_each_planted_case_with_its_reason_and_keep_the_reference(tmp_path):
    base = REFERENCE[0]
    source = base["meta"]["raw_text"]
    paragraph = json.loads(BENCHMARK.read_text().splitlines()[9])["text"]
    planted = {
        "planted-copy": _planted(base, "planted-copy", source),
        "planted-near-duplicate": _planted(REFERENCE[12], "planted-near-duplicate",
                                           REFERENCE[12]["content_split"].replace(" the ", " a ", 1)),
        "planted-zh": _planted(base, "planted-zh", _zh_text()),
        "planted-benchmark": _planted(REFERENCE[1], "planted-benchmark", f"{REFERENCE[1]['content_split']}\n\n{paragraph}"),
    }
    same = [{**REFERENCE[5], "meta": {**REFERENCE[5]["meta"], "docid": "planted-same", "pair_id": i}}
            for i in range(5)]  # one document whose five rewrites are one text
    src = write_rows(tmp_path / "rows.jsonl", [*REFERENCE, *planted.values(), *same])
    cfg = FilterConfig(benchmarks=[str(BENCHMARK)])
    counts = filter_file(src, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl", cfg)
    rejected = read_rows(tmp_path / "rejected.jsonl")
    reasons = {r["meta"]["docid"]: r["filter"]["reason"] for r in rejected if r["meta"]["docid"].startswith("planted")}
    assert reasons == {"planted-copy": "high_copy_rate", "planted-near-duplicate": "near_duplicate",
                       "planted-zh": "language_changed", "planted-benchmark": "contaminated",
                       "planted-same": "low_diversity"}
    assert sum(r["meta"]["docid"] == "planted-same" for r in rejected) == 5
    details = {r["meta"]["docid"]: r["filter"]["detail"] for r in rejected}
    assert details["planted-zh"] == "en -> zh" and "sample.jsonl:sample-09" in details["planted-benchmark"]
    assert details["planted-near-duplicate"].startswith(f"near-duplicate of {REFERENCE[12]['meta']['docid']}#")

    flagged = [r for r in rejected if not r["meta"]["docid"].startswith("planted") and r["filter"]["reason"] in MONITOR_REASONS]
    assert len(flagged) / len(REFERENCE) <= MAX_FALSE_FLAG_RATE, [(r["meta"]["docid"], r["filter"]) for r in flagged]
    kept = read_rows(tmp_path / "kept.jsonl")
    assert counts["kept"] == len(kept) > 0.9 * len(REFERENCE)
    assert all(r["meta"]["monitors"]["diversity"] is not None and r["meta"]["monitors"]["language"] == "en" for r in kept)


def test_every_monitor_threshold_is_a_recipe_key(tmp_path):
    import yaml
    from mga.distill.pipeline.recipe import load_recipe

    keys = {"max_copy_rate": 0.9, "min_diversity": 0.0, "reject_language_change": False,
            "near_duplicate_threshold": None, "benchmarks": [str(BENCHMARK)], "contamination_min_ngrams": 3}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "monitors", "filter": keys}))
    cfg = load_recipe(recipe).filter
    assert cfg.model_dump(include=set(keys)) == keys
    copy = _planted(REFERENCE[0], "c", REFERENCE[0]["meta"]["raw_text"])
    assert filter_row(copy, cfg)[:2] == (False, "high_copy_rate")  # 1.0 > 0.9
    assert filter_row(copy, cfg.model_copy(update={"max_copy_rate": 1.0}))[:2] == (True, None)


def test_quality_summary_tells_a_copying_variant_from_the_reference():
    copies = [{**r, "variant": "strict", "content_split": r["meta"]["raw_text"]} for r in REFERENCE[:20]]
    strict, base = quality_summary(copies), quality_summary(REFERENCE[:20])
    assert strict["copy_rate"] == 1.0 and base["copy_rate"] < 0.2
    assert strict["near_duplicate_share"] > 0.5 > base["near_duplicate_share"]  # 5 copies of each source
    assert strict["diversity"] < 0.01 < base["diversity"] and base["language_kept"] == 1.0


def test_the_report_shows_the_quality_table_beside_table_2(tmp_path):
    from mga.judge.report import QUALITY_TITLE, write_report

    def judged(rows, variant):
        return [{**r, "variant": variant, "judge": {"score": 4, "status": "scored", "backend": "llm", "model": "j"}}
                for r in rows]

    rows = REFERENCE[:10]
    teacher = judged(rows, "base") + judged([{**r, "content_split": r["meta"]["raw_text"]} for r in rows], "strict")
    md = write_report({"teacher": teacher}, tmp_path).read_text()
    table2 = md.index("## Table 2")
    assert table2 < md.index(f"## {QUALITY_TITLE}") < md.index("## Judge health", table2)
    quality = json.loads((tmp_path / "report.json").read_text())["quality"]["variants"]
    assert quality["teacher / strict"]["copy_rate"] == 1.0 > quality["teacher / base"]["copy_rate"]
    assert "| teacher / strict | 10 | 1.000 |" in md


def test_a_missing_benchmark_file_is_a_user_error(tmp_path):
    from mga.distill.core.errors import MgaError

    with pytest.raises(MgaError, match="benchmark file not found"):
        BenchmarkIndex([Path(tmp_path) / "none.jsonl"])
