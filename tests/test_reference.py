"""The bundled reference set: its shape, that its originals are verbatim corpus text, that its README states
its sizes and score spread, the optional stage-1-only pairs file, and the converters into the pipeline's
row schemas."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest
from mga.data import data_path
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.schema import OK, chunk_key, rewrite_key, score_of
from mga.judge.reference import (
    default_reference_path,
    load_reference,
    load_reference_documents,
    pairs_path,
    reference_chunk_rows,
    reference_files,
    reference_judged_rows,
    reference_pairs_rows,
    reference_rewrite_docids,
    reference_rewrite_rows,
    write_reference_labels,
)

# corpus, at least this many documents with rewrites, at least this many with stage-1 pairs (issue 23)
LANGUAGES = {"en": ("corpus.jsonl", 21, 66), "zh": ("corpus_zh.jsonl", 10, 10)}
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
CHUNK = re.compile(r"\.p1-(\d+)$")
MAX_WORDS = 250  # English originals: short documents, or the first paragraphs of long ones
README = data_path("reference", "README.md")


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


@pytest.fixture(params=sorted(LANGUAGES))
def language(request):
    return request.param


@pytest.fixture
def reference(language):
    return load_reference(default_reference_path(language))


@pytest.fixture
def documents(language):
    return load_reference_documents(default_reference_path(language))


def test_sizes(language, reference, documents):
    _, with_rewrites, with_pairs = LANGUAGES[language]
    assert len(reference) >= with_rewrites and len(documents) >= with_pairs
    assert documents[:len(reference)] == reference


def test_docids_do_not_repeat_across_the_files(documents):
    docids = [row["docid"] for row in documents]
    assert len(set(docids)) == len(docids), [d for d, n in Counter(docids).items() if n > 1]


def test_size_and_pairs(reference, documents):
    for row in documents:
        pairs = row["pairs"]
        assert len(pairs) == 5, row["docid"]
        assert len({_normalise(p["genre"]) for p in pairs}) == 5, row["docid"]
        assert len({_normalise(p["audience"]) for p in pairs}) == 5, row["docid"]
    for row in reference:
        for pair in row["pairs"]:
            assert type(pair["score"]) is int and 1 <= pair["score"] <= 5
            assert all(pair[f].strip() for f in ("genre", "audience", "rewrite", "justification"))
            assert _normalise(pair["rewrite"]) != _normalise(row["text"]), "a rewrite must not copy the original"


def test_descriptions_follow_stage1_design(documents):
    """Genres in 2-3 sentences, audiences in 2 (loosely: 2-4 sentence ends)."""
    for row in documents:
        for pair in row["pairs"]:
            assert 2 <= len(SENTENCE_END.findall(pair["genre"])) <= 4, pair["genre"]
            assert 2 <= len(SENTENCE_END.findall(pair["audience"])) <= 4, pair["audience"]


def test_genres_are_not_one_fixed_list(documents):
    """The student learns its genres from these: no genre description is reused from another document."""
    genres = Counter(_normalise(p["genre"]) for row in documents for p in row["pairs"])
    assert [g for g, n in genres.items() if n > 1] == []


def test_originals_are_verbatim_corpus_text(language, documents):
    """Whole documents, or `<id>.p1-N`: exactly the first N blank-line-separated paragraphs, as `span` says."""
    corpus = {r["id"]: r for r in read_rows(data_path("sample", LANGUAGES[language][0]))}
    for row in documents:
        chunk = CHUNK.search(row["docid"])
        source_id = row["docid"][:chunk.start()] if chunk else row["docid"]
        assert source_id in corpus, row["docid"]
        original = corpus[source_id]
        assert (row["source"], row["license"]) == (original["source"], original["license"]), row["docid"]
        assert row["chunk_id"] == 0
        paragraphs = original["text"].split("\n\n")
        if chunk:
            last = int(chunk.group(1))
            assert last < len(paragraphs) and row["text"] == "\n\n".join(paragraphs[:last]), row["docid"]
            assert row["span"] == f"paragraphs 1-{last} of {len(paragraphs)}", row["docid"]
        else:
            assert row["text"] == original["text"] and row["span"] == "whole document", row["docid"]
        if language == "en":
            assert len(row["text"].split()) <= MAX_WORDS, row["docid"]


def test_score_spread(language, reference):
    scores = [p["score"] for r in reference for p in r["pairs"]]
    counts = Counter(scores)
    assert set(counts) == {1, 2, 3, 4, 5}
    low = sum(s <= 2 for s in scores) / len(scores)
    high = sum(s >= 4 for s in scores) / len(scores)
    assert low >= 0.15 and high >= 0.30, counts


def _table_rows(pattern: str) -> dict[str, tuple[str, ...]]:
    rows = [re.match(pattern, line) for line in README.read_text(encoding="utf-8").splitlines()]
    return {m.group(1): m.groups()[1:] for m in rows if m}


def test_readme_states_the_sizes_and_score_spread(language, reference, documents):
    """data/reference/README.md's tables are the files' own figures."""
    files = _table_rows(r"^\| `(\w+)\.jsonl` \| (\d+) \| (\d+) \|")
    assert files[language] == (str(len(reference)), str(sum(len(r["pairs"]) for r in reference)))
    pairs_only = _table_rows(r"^\| `(\w+)\.pairs\.jsonl` \| (\d+) \|")
    assert pairs_only.get(language, ("0",)) == (str(len(documents) - len(reference)),)
    scores = [p["score"] for r in reference for p in r["pairs"]]
    counts = Counter(scores)
    spread = _table_rows(r"^\| (\w+) \((\d+)\) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)% \| ([\d.]+)% \|$")
    low, high = (100 * sum(test(s) for s in scores) / len(scores) for test in (lambda s: s <= 2, lambda s: s >= 4))
    assert spread[language] == (str(len(scores)), *(str(counts[s]) for s in (5, 4, 3, 2, 1)), f"{low:.1f}", f"{high:.1f}")


def test_rewrite_docids_are_the_rows_with_rewrites(language, reference, documents):
    path = default_reference_path(language)
    with_rewrites = reference_rewrite_docids(path)
    assert with_rewrites == {r["docid"] for r in reference}
    assert {r["meta"]["docid"] for r in reference_rewrite_rows(path)} == with_rewrites
    assert {r["meta"]["docid"] for r in reference_judged_rows(path)} == with_rewrites
    assert {r["meta"]["docid"] for r in reference_pairs_rows(path)} == {r["docid"] for r in documents}


def test_converters_follow_the_schema(language):
    path = default_reference_path(language)
    reference, documents = load_reference(path), load_reference_documents(path)
    chunks = reference_chunk_rows(path)
    assert [c["meta"]["raw_text"] for c in chunks] == [r["text"] for r in documents]
    assert len({chunk_key(c) for c in chunks}) == len(chunks)

    pairs_rows = reference_pairs_rows(path)
    assert len(pairs_rows) == len(documents)
    for row, ref in zip(pairs_rows, documents):
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
    assert len(read_rows(files["chunks"])) == len(load_reference_documents(path)) > len(load_reference(path))
    assert len(read_rows(files["rewrites"])) == 5 * len(load_reference(path))


def test_pairs_pass_the_stage1_check(documents):
    pairs_check = pytest.importorskip("mga.judge.pairs_check")
    for row in documents:
        pairs = [{"genre": p["genre"], "audience": p["audience"]} for p in row["pairs"]]
        parsed, reason = pairs_check.parse_pairs(json.dumps({"pairs": pairs}, ensure_ascii=False))
        assert reason is None and parsed == pairs, (row["docid"], reason)


def _copy_set(tmp_path, stem: str = "en", with_pairs: bool = True):
    shipped = default_reference_path("en")
    path = tmp_path / f"{stem}.jsonl"
    shutil.copy(shipped, path)
    if with_pairs:
        shutil.copy(pairs_path(shipped), pairs_path(path))
    return path


def test_the_pairs_file_is_optional(tmp_path):
    path = _copy_set(tmp_path, with_pairs=False)
    assert reference_files(path) == [path]
    assert load_reference_documents(path) == load_reference(path)
    assert len(reference_pairs_rows(path)) == len(reference_chunk_rows(path)) == len(load_reference(path))


def test_a_user_set_finds_its_pairs_file_by_stem(tmp_path):
    path = _copy_set(tmp_path, stem="my")
    assert pairs_path(path).name == "my.pairs.jsonl" and reference_files(path) == [path, pairs_path(path)]
    shipped = default_reference_path("en")
    assert len(reference_pairs_rows(path)) == len(reference_pairs_rows(shipped)) > len(load_reference(path))
    assert reference_rewrite_rows(path) == reference_rewrite_rows(shipped)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["pairs"][0].pop("genre"), r"pair 1: 'genre' must be a non-empty string"),
        (lambda r: r["pairs"][3].update(audience=" "), r"pair 4: 'audience' must be a non-empty string"),
        (lambda r: r["pairs"][1].update(rewrite="text", score=5), r"pair 2: unexpected field 'rewrite'"),
        (lambda r: r["pairs"].__setitem__(2, "a genre"), r"pair 3: must be an object with genre and audience"),
        (lambda r: r.update(pairs=[]), r"'pairs' must be a non-empty list"),
        (lambda r: r.pop("text"), r"'text' must be a non-empty string"),
        (lambda r: r.update(docid="pydoc-break"), r"docid 'pydoc-break' is also in en\.jsonl"),
    ],
)
def test_bad_pairs_rows_are_one_line_user_errors(tmp_path, change, message):
    path = _copy_set(tmp_path)
    rows = read_rows(pairs_path(path))
    change(rows[1])
    pairs_path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for load in (load_reference_documents, reference_chunk_rows, reference_pairs_rows):
        with pytest.raises(MgaError, match=r"en\.pairs\.jsonl: row 2\b.*" + message) as error:
            load(path)
        assert "\n" not in str(error.value)
    assert len(reference_judged_rows(path)) == 5 * len(load_reference(path))  # the rows with rewrites still load


def test_a_document_repeated_in_the_pairs_file_is_a_user_error(tmp_path):
    path = _copy_set(tmp_path)
    rows = read_rows(pairs_path(path))
    pairs_path(path).write_text("".join(json.dumps(r) + "\n" for r in [*rows, rows[0]]), encoding="utf-8")
    with pytest.raises(MgaError, match=rf"row {len(rows) + 1}: docid '{rows[0]['docid']}' chunk 0 repeats row 1"):
        load_reference_documents(path)


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
