"""SFT examples use the teacher's prompts and answers; the eval split is drawn by document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.prompts import pairs_messages, rewrite_messages
from mga.distill.train.sft_data import build_sft_datasets, sft_messages


def pairs_row(doc: int, chunk: int = 0, status: str = "ok") -> dict:
    return {
        "meta": {"docid": f"doc{doc}", "chunk_id": chunk, "source": "t", "raw_text": f"Text of document {doc}."},
        "pairs": [{"genre": f"genre {i} of {doc}", "audience": f"audience {i}"} for i in range(5)],
        "status": status,
        "reason": None,
    }


def rewrite_row(doc: int, pair: int, status: str = "ok", variant: str = "base") -> dict:
    meta = {"docid": f"doc{doc}", "chunk_id": 0, "source": "t", "raw_text": f"Text of document {doc}.",
            "genre": f"genre {pair}", "audience": f"audience {pair}", "pair_id": pair}
    return {"meta": meta, "content_split": f"Rewrite of {doc} for pair {pair}.", "variant": variant,
            "status": status, "reason": None, "judge": {"score": 4, "status": "scored"}}


def test_pairs_messages_are_the_teachers_prompt_plus_json_answer():
    row = pairs_row(1)
    messages = sft_messages(row, "pairs", num_pairs=5)
    assert messages[:-1] == pairs_messages(row["meta"]["raw_text"], "en", 5)
    assert messages[-1]["role"] == "assistant"
    assert json.loads(messages[-1]["content"]) == {"pairs": row["pairs"]}


def test_rewrite_messages_use_the_rows_variant():
    row = rewrite_row(2, 3, variant="strict")
    messages = sft_messages(row, "rewrite")
    assert messages[:-1] == rewrite_messages(row["meta"]["raw_text"], "genre 3", "audience 3", "strict", "en")
    assert messages[-1] == {"role": "assistant", "content": row["content_split"]}


def test_split_is_by_document_and_seeded(tmp_path: Path):
    rows = [rewrite_row(d, p) for d in range(20) for p in range(3)] + [rewrite_row(99, 0, status="truncated")]
    write_rows(tmp_path / "kept.jsonl", rows)
    train, evals = build_sft_datasets(tmp_path / "kept.jsonl", "rewrite", tmp_path / "a", eval_fraction=0.25, seed=3)
    train_rows, eval_rows = read_rows(train), read_rows(evals)
    train_docs, eval_docs = {r["docid"] for r in train_rows}, {r["docid"] for r in eval_rows}
    assert not train_docs & eval_docs
    assert len(eval_docs) == 5 and len(train_docs) == 15
    assert len(train_rows) + len(eval_rows) == 60  # the truncated row is not trained on
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert sorted(split["eval"]) == sorted(eval_docs) and sorted(split["train"]) == sorted(train_docs)
    build_sft_datasets(tmp_path / "kept.jsonl", "rewrite", tmp_path / "b", eval_fraction=0.25, seed=3)
    assert (tmp_path / "b" / "split.json").read_text().replace("/b", "/a") == (tmp_path / "a" / "split.json").read_text()


def test_no_eval_fraction_gives_an_empty_eval_file(tmp_path: Path):
    write_rows(tmp_path / "pairs.jsonl", [pairs_row(d) for d in range(4)] + [pairs_row(9, status="failed")])
    train, evals = build_sft_datasets(tmp_path / "pairs.jsonl", "pairs", tmp_path / "out", eval_fraction=0.0)
    assert len(read_rows(train)) == 4 and read_rows(evals) == []


def test_no_usable_rows_is_a_clear_error(tmp_path: Path):
    write_rows(tmp_path / "pairs.jsonl", [pairs_row(1, status="failed")])
    with pytest.raises(MgaError, match="no usable rows"):
        build_sft_datasets(tmp_path / "pairs.jsonl", "pairs", tmp_path / "out")
    with pytest.raises(MgaError, match="no usable rows"):  # a pairs file is not stage-2 data
        build_sft_datasets(tmp_path / "pairs.jsonl", "rewrite", tmp_path / "out")


def test_the_shipped_reference_set_builds_sft_data(tmp_path: Path):
    from mga.data import data_path

    path = data_path("reference", "en.jsonl")
    from mga.judge.reference import reference_pairs_rows, reference_rewrite_rows

    for stage, rows in (("pairs", reference_pairs_rows(path)), ("rewrite", reference_rewrite_rows(path))):
        write_rows(tmp_path / f"{stage}.jsonl", rows)
        train, evals = build_sft_datasets(tmp_path / f"{stage}.jsonl", stage, tmp_path / stage, eval_fraction=0.2)
        docs = [{r["docid"] for r in read_rows(p)} for p in (train, evals)]
        assert docs[0] and not docs[0] & docs[1]
