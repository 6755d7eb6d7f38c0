"""Filters return (keep, reason), strip boilerplate lines, and split a file into kept and rejected rows."""

from __future__ import annotations

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.judge.config import FilterConfig
from mga.judge.filters import (
    clean_rewrite,
    coverage_filter,
    filter_file,
    keyword_coverage,
    score_filter,
)

ORIGINAL = ("Photosynthesis lets plants convert sunlight, water and carbon dioxide into glucose and oxygen. "
            "Chlorophyll in the leaves absorbs the light energy that drives the reaction.")
FAITHFUL = ("Plants are tiny factories: their leaves hold chlorophyll, which absorbs sunlight, and that energy "
            "turns water and carbon dioxide into glucose, with oxygen released as a by-product.")
UNRELATED = "The stock market closed higher today after investors welcomed the quarterly earnings reports."


def row(text, score=None, status="ok", unscored=False, pair_id=0):
    r = {"meta": {"docid": "d", "chunk_id": 0, "raw_text": ORIGINAL, "pair_id": pair_id}, "content_split": text,
         "variant": "base", "status": status, "reason": None}
    if score is not None or unscored:
        r["judge"] = {"score": score, "status": "unscored" if unscored else "scored", "backend": "llm"}
    return r


def test_clean_rewrite_strips_boilerplate_lines_en():
    text = ("Here is the rewritten version of the text for children:\n\n"
            "Plants make food from light.\n"
            "**Note:** I simplified the chemistry.\n"
            "Please note that the text was shortened.\n"
            "The above is written as required by the prompt.\n"
            "The following is a summary for young readers.\n"
            "Leaves are green because of chlorophyll.\n"
            "  - Note: another remark")
    cleaned, removed = clean_rewrite(text, "en")
    assert cleaned == "Plants make food from light.\nLeaves are green because of chlorophyll."
    assert len(removed) == 6 and removed[1] == "**Note:** I simplified the chemistry."


def test_clean_rewrite_keeps_ordinary_lines_and_accepts_custom_patterns():
    text = "Notes on the harvest were kept.\nA footnote: nothing to see."
    assert clean_rewrite(text, "en") == (text, [])
    assert clean_rewrite(text, "en", patterns=[r"a footnote\b"]) == ("Notes on the harvest were kept.", ["A footnote: nothing to see."])
    with pytest.raises(MgaError, match="invalid pattern"):
        clean_rewrite(text, "en", patterns=["(unclosed"])


def test_clean_rewrite_zh():
    text = "以下是改写后的文本：\n植物利用阳光制造养分。\n注：本文已按要求简化。\n请注意，部分细节被省略。"
    cleaned, removed = clean_rewrite(text, "zh")
    assert cleaned == "植物利用阳光制造养分。" and len(removed) == 3


def test_keyword_coverage_separates_faithful_from_unrelated():
    assert keyword_coverage(ORIGINAL, FAITHFUL) > 0.6
    assert keyword_coverage(ORIGINAL, UNRELATED) == 0.0
    assert keyword_coverage(ORIGINAL, ORIGINAL) == 1.0
    assert keyword_coverage("光合作用让植物把阳光转化为养分。", "植物通过光合作用获得养分。", "zh") > 0.3
    assert keyword_coverage("", "anything") == 1.0  # nothing to lose


def test_score_and_coverage_filters_return_keep_and_reason():
    assert score_filter(row(FAITHFUL, 3), 3) == (True, None)
    assert score_filter(row(FAITHFUL, 2), 3) == (False, "score_below_3")
    assert score_filter(row(FAITHFUL, unscored=True), 3) == (False, "unscored")
    assert coverage_filter(row(UNRELATED), 0.05) == (False, "low_keyword_coverage")
    assert coverage_filter(row(FAITHFUL), 0.05) == (True, None)


def test_filter_file_splits_judged_rows_with_reasons(tmp_path):
    rows = [
        row(FAITHFUL, 5, pair_id=0),
        row("Note: rewritten for kids.\n" + FAITHFUL, 4, pair_id=1),
        row(FAITHFUL, 2, pair_id=2),
        row(FAITHFUL, unscored=True, pair_id=3),
        row(UNRELATED, 3, pair_id=4),
        row("Please note that this is a rewrite.", 5, pair_id=5),
        row("", status="failed", pair_id=6),
    ]
    src = write_rows(tmp_path / "judged.jsonl", rows)
    # pairs 0 and 1 are the same rewrite on purpose (cleaning); the near-duplicate filter is tested in test_monitors
    no_dedup = {"near_duplicate_threshold": None}
    counts = filter_file(src, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl",
                         FilterConfig(min_score=3, **no_dedup))
    assert counts == {"kept": 2, "cleaned": 2, "score_below_3": 1, "unscored": 1, "low_keyword_coverage": 1,
                      "empty_after_cleaning": 1, "rewrite_failed": 1}
    kept = read_rows(tmp_path / "kept.jsonl")
    assert [r["meta"]["pair_id"] for r in kept] == [0, 1]
    assert kept[1]["content_split"] == FAITHFUL and kept[1]["filter"]["removed_lines"] == ["Note: rewritten for kids."]
    assert kept[1]["raw_content_split"].startswith("Note:")
    rejected = {r["meta"]["pair_id"]: r["filter"]["reason"] for r in read_rows(tmp_path / "rejected.jsonl")}
    assert rejected == {2: "score_below_3", 3: "unscored", 4: "low_keyword_coverage", 5: "empty_after_cleaning",
                        6: "rewrite_failed"}
    # a stricter threshold moves the 4 out; rerunning overwrites the outputs instead of appending
    counts = filter_file(src, tmp_path / "kept.jsonl", tmp_path / "rejected.jsonl",
                         FilterConfig(min_score=5, **no_dedup))
    assert counts["kept"] == 1 and len(read_rows(tmp_path / "kept.jsonl")) == 1


def test_unjudged_rewrites_get_cleaning_and_coverage_only(tmp_path):
    src = write_rows(tmp_path / "rewrites.jsonl", [row(FAITHFUL), row(UNRELATED, pair_id=1)])
    counts = filter_file(src, tmp_path / "k.jsonl", tmp_path / "r.jsonl", FilterConfig(min_score=5))
    assert counts["kept"] == 1 and counts["low_keyword_coverage"] == 1


def test_lines_carried_over_from_the_original_are_not_boilerplate():
    from mga.judge.filters import clean_rewrite

    original = "Lambdas are small.\nNote: they cannot contain statements."
    rewrite = "Tiny functions!\nNote: they cannot contain statements.\nNote: this rewrite targets kids."
    text, removed = clean_rewrite(rewrite, "en", original=original)
    assert removed == ["Note: this rewrite targets kids."]
    assert "Note: they cannot contain statements." in text
