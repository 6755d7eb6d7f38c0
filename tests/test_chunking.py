"""Chunking keeps the token cap, splits on paragraph boundaries, and skips bad rows with one warning each."""

from __future__ import annotations

import json

import pytest
from mga.data import data_path
from mga.distill.core.config import CorpusConfig
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.tokens import estimate_tokens, token_counter
from mga.distill.label.chunk import chunk_corpus, split_document


def paragraphs(n: int, words: int = 40) -> list[str]:
    return [" ".join(f"w{p}x{i}" for i in range(words)) + "." for p in range(n)]


def test_split_respects_cap_and_paragraph_boundaries():
    paras = paragraphs(12)
    text = "\n\n".join(paras)
    chunks = split_document(text, cap=130)
    assert len(chunks) > 1
    assert all(estimate_tokens(c) <= 130 for c in chunks)
    for chunk in chunks:  # every chunk is whole paragraphs
        assert all(p in paras for p in chunk.split("\n\n"))
    assert "\n\n".join(chunks) == text  # nothing lost, order kept


def test_oversized_paragraph_is_split_on_sentences_then_words():
    sentences = [f"Sentence number {i} says something rather long about item {i}." for i in range(30)]
    chunks = split_document(" ".join(sentences), cap=40)
    assert all(estimate_tokens(c) <= 40 for c in chunks)
    assert all(c.rstrip().endswith(".") for c in chunks)  # cut between sentences
    blob = " ".join(f"word{i}" for i in range(500))  # no sentence end, no newline
    chunks = split_document(blob, cap=50)
    assert all(estimate_tokens(c) <= 50 for c in chunks) and " ".join(chunks).split() == blob.split()


def test_cjk_text_is_counted_per_character():
    assert estimate_tokens("机器学习很有趣。") == 8
    chunks = split_document("。".join(["这是一个很长的中文句子"] * 40) + "。", cap=30)
    assert all(estimate_tokens(c) <= 30 for c in chunks)


def test_real_tokenizer_caps_chunks(tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.jsonl"
    text = "\n\n".join(paragraphs(20, words=30))
    corpus.write_text(json.dumps({"id": "d", "text": text}) + "\n")
    out = chunk_corpus(corpus, tmp_path / "chunks.jsonl", CorpusConfig(chunk_tokens=200, tokenizer=str(tiny_model_dir)))
    count = token_counter(str(tiny_model_dir))
    rows = read_rows(out)
    assert len(rows) > 1 and all(count(r["meta"]["raw_text"]) <= 200 for r in rows)
    assert [r["meta"]["chunk_id"] for r in rows] == list(range(len(rows)))
    assert {r["meta"]["docid"] for r in rows} == {"d"}


def test_bad_rows_are_warned_and_skipped(tmp_path, capsys):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_bytes(
        b'{"id": "good1", "text": "A fine document."}\n'
        b'{"id": "empty", "text": "   "}\n'
        b'{"id": "latin", "text": "caf\xe9 au lait"}\n'
        b'{"id": "notext", "body": "no text field"}\n'
        b"this is not json\n"
        b'{"id": "good1", "text": "A fine document."}\n'  # the same document twice: skipped
        b'{"id": "good2", "text": "Another fine document."}\n'
    )
    rows = read_rows(chunk_corpus(corpus, tmp_path / "chunks.jsonl", CorpusConfig()))
    assert [r["meta"]["docid"] for r in rows] == ["good1", "good2"]
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 5
    for where, what in [(2, "empty"), (3, "UTF-8"), (4, "no 'text' field"), (5, "not a JSON row"), (6, "duplicate")]:
        assert any(f"bad.jsonl:{where}:" in w and what in w for w in warnings), (where, err)


def test_two_documents_under_one_id_are_an_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "One text."}\n{"id": "a", "text": "Another text."}\n')
    with pytest.raises(MgaError, match="duplicate document id 'a' .*rows 1 and 2"):
        chunk_corpus(corpus, tmp_path / "o.jsonl", CorpusConfig())


def test_no_usable_documents_is_an_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": 1, "body": "x"}\n')
    with pytest.raises(MgaError, match="no usable documents"):
        chunk_corpus(corpus, tmp_path / "o.jsonl", CorpusConfig())


def test_sampling_is_seeded_and_sized(tmp_path):
    cfg = CorpusConfig(sample_size=10)
    sample = data_path("sample", "corpus.jsonl")
    a = read_rows(chunk_corpus(sample, tmp_path / "a.jsonl", cfg, seed=1))
    b = read_rows(chunk_corpus(sample, tmp_path / "b.jsonl", cfg, seed=1))
    c = read_rows(chunk_corpus(sample, tmp_path / "c.jsonl", cfg, seed=2))
    docs = lambda rows: [r["meta"]["docid"] for r in rows if r["meta"]["chunk_id"] == 0]  # noqa: E731
    assert docs(a) == docs(b) and len(docs(a)) == 10 and docs(a) != docs(c)


def test_documents_in_another_language_get_one_warning_with_their_count(tmp_path, capsys):
    """Chinese documents through the English prompts: said once, with the count; the documents are still chunked."""
    from mga.distill.core.io import write_rows

    english = read_rows(data_path("sample", "corpus.jsonl"))[:3]
    chinese = read_rows(data_path("sample", "corpus_zh.jsonl"))[:4]
    corpus = write_rows(tmp_path / "mixed.jsonl", english + chinese)
    chunk_corpus(corpus, tmp_path / "chunks.jsonl", CorpusConfig(), language="en")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "4 of 7 documents are not mostly in the script of English" in warnings[0]
    assert {r["meta"]["docid"] for r in read_rows(tmp_path / "chunks.jsonl")} >= {r["id"] for r in chinese}
    chunk_corpus(data_path("sample", "corpus_zh.jsonl"), tmp_path / "zh.jsonl", CorpusConfig(), language="zh")
    assert "warning:" not in capsys.readouterr().err
