"""The bundled reference set: its shape, that its originals are verbatim corpus text, its score spread, and
the converters into the pipeline's row schemas."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from mga.data import data_path
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.schema import OK, chunk_key, rewrite_key, score_of
from mga.judge.reference import (
    default_reference_path,
    load_reference,
    reference_chunk_rows,
    reference_judged_rows,
    reference_pairs_rows,
    reference_rewrite_rows,
    write_reference_labels,
)

LANGUAGES = {"en": ("corpus.jsonl", 12), "zh": ("corpus_zh.jsonl", 4)}
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


@pytest.fixture(params=sorted(LANGUAGES))
def language(request):
    return request.param


@pytest.fixture
def reference(language):
    return load_reference(default_reference_path(language))


def test_size_and_pairs(language, reference):
    assert len(reference) >= LANGUAGES[language][1]
    assert len({(r["docid"], r["chunk_id"]) for r in reference}) == len(reference)
    for row in reference:
        pairs = row["pairs"]
        assert len(pairs) == 5, row["docid"]
        assert len({_normalise(p["genre"]) for p in pairs}) == 5, row["docid"]
        assert len({_normalise(p["audience"]) for p in pairs}) == 5, row["docid"]
        for pair in pairs:
            assert type(pair["score"]) is int and 1 <= pair["score"] <= 5
            assert all(pair[f].strip() for f in ("genre", "audience", "rewrite", "justification"))
            assert _normalise(pair["rewrite"]) != _normalise(row["text"]), "a rewrite must not copy the original"


def test_descriptions_follow_stage1_design(reference):
    """Genres in 2-3 sentences, audiences in 2 (loosely: 2-4 sentence ends)."""
    for row in reference:
        for pair in row["pairs"]:
            assert 2 <= len(SENTENCE_END.findall(pair["genre"])) <= 4, pair["genre"]
            assert 2 <= len(SENTENCE_END.findall(pair["audience"])) <= 4, pair["audience"]


def test_originals_are_verbatim_corpus_text(language, reference):
    corpus = {r["id"]: r for r in read_rows(data_path("sample", LANGUAGES[language][0]))}
    for row in reference:
        source_id = row["docid"].split(".p")[0]
        assert source_id in corpus, row["docid"]
        assert row["text"] in corpus[source_id]["text"], row["docid"]
        assert row["source"] == corpus[source_id]["source"]


def test_score_spread(language, reference):
    scores = [p["score"] for r in reference for p in r["pairs"]]
    counts = Counter(scores)
    assert set(counts) == {1, 2, 3, 4, 5}
    low = sum(s <= 2 for s in scores) / len(scores)
    high = sum(s >= 4 for s in scores) / len(scores)
    assert low >= 0.15 and high >= 0.30, counts
    if language == "en":
        assert all(counts[s] >= 5 for s in range(1, 6)), counts


def test_converters_follow_the_schema(language):
    path = default_reference_path(language)
    reference = load_reference(path)
    chunks = reference_chunk_rows(path)
    assert [c["meta"]["raw_text"] for c in chunks] == [r["text"] for r in reference]
    assert len({chunk_key(c) for c in chunks}) == len(chunks)

    pairs_rows = reference_pairs_rows(path)
    for row, ref in zip(pairs_rows, reference):
        assert row["status"] == OK and row["reason"] is None and row["finish_reason"] == "stop"
        assert row["meta"] == {"docid": ref["docid"], "chunk_id": ref["chunk_id"], "source": ref["source"],
                               "raw_text": ref["text"]}
        assert json.loads(row["raw_output"])["pairs"] == row["pairs"]
        assert [set(p) for p in row["pairs"]] == [{"genre", "audience"}] * 5
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0

    rewrites = reference_rewrite_rows(path, variant="strict", model="teacher-x")
    assert len(rewrites) == 5 * len(reference)
    assert len({rewrite_key(r) for r in rewrites}) == len(rewrites)
    for row in rewrites:
        assert set(row["meta"]) == {"docid", "chunk_id", "source", "raw_text", "genre", "audience", "pair_id"}
        assert row["variant"] == "strict" and row["model"] == "teacher-x" and row["status"] == OK
        assert row["content_split"].strip() and row["completion_tokens"] == len(row["content_split"].split())
        assert rewrite_key(row).endswith("#strict")

    judged = reference_judged_rows(path)
    expected = [p["score"] for r in reference for p in r["pairs"]]
    assert [score_of(r) for r in judged] == expected
    assert {r["variant"] for r in judged} == {"base"}
    assert all(r["judge"]["backend"] == "reference" and r["judge"]["analysis"] for r in judged)
    assert [r["content_split"] for r in judged] == [p["rewrite"] for r in reference for p in r["pairs"]]


def test_write_reference_labels(tmp_path):
    path = default_reference_path("en")
    files = write_reference_labels(path, tmp_path / "labels")
    assert set(files) == {"chunks", "pairs", "rewrites", "judged"}
    assert files["rewrites"].name == "rewrites.base.jsonl"
    assert read_rows(files["judged"]) == reference_judged_rows(path)
    assert read_rows(files["pairs"]) == reference_pairs_rows(path)
    assert len(read_rows(files["chunks"])) == len(load_reference(path))


def test_pairs_pass_the_stage1_check(reference):
    pairs_check = pytest.importorskip("mga.judge.pairs_check")
    for row in reference:
        pairs = [{"genre": p["genre"], "audience": p["audience"]} for p in row["pairs"]]
        parsed, reason = pairs_check.parse_pairs(json.dumps({"pairs": pairs}, ensure_ascii=False))
        assert reason is None and parsed == pairs, (row["docid"], reason)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["pairs"][0].update(score=6), "'score' must be an integer from 1 to 5"),
        (lambda r: r["pairs"][1].update(score="4"), "'score' must be an integer from 1 to 5"),
        (lambda r: r["pairs"][2].update(rewrite="  "), "'rewrite' must be a non-empty string"),
        (lambda r: r.pop("text"), "'text' must be a non-empty string"),
        (lambda r: r.update(chunk_id=-1), "'chunk_id' must be an integer"),
        (lambda r: r.update(pairs=[]), "'pairs' must be a non-empty list"),
    ],
)
def test_bad_rows_are_user_errors(tmp_path, change, message):
    rows = load_reference(default_reference_path("en"))[:2]
    change(rows[1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(MgaError, match=r"row 2.*" + re.escape(message)):
        load_reference(bad)


def test_repeated_document_and_empty_file_are_user_errors(tmp_path):
    row = load_reference(default_reference_path("en"))[0]
    twice = tmp_path / "twice.jsonl"
    twice.write_text((json.dumps(row) + "\n") * 2, encoding="utf-8")
    with pytest.raises(MgaError, match="repeats row 1"):
        load_reference(twice)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(MgaError, match="empty"):
        load_reference(empty)
    with pytest.raises(MgaError, match="not found"):
        load_reference(tmp_path / "missing.jsonl")
