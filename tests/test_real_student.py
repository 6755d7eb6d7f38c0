"""A short real-model SFT: SmolLM2-135M-Instruct learns the stage-1 task from the bundled teacher pairs.

Untrained, asked for five (genre, audience) pairs, it writes prose; after one epoch on a dozen teacher
answers it writes the JSON. Both are measured the same way (llama.cpp on the f16 GGUF export, greedy, one
attempt, the toolkit's stage-1 rule check) on documents it was not trained on, and the test asks for more than
a better rate: the Wilson intervals must not overlap. A few minutes on 2 cores.
"""

from __future__ import annotations

import pytest
from mga.distill.core.config import GenerationParams
from mga.distill.core.io import read_rows, write_rows
from mga.distill.generate.local import LocalGenerator
from mga.distill.label.labeling import label_pairs
from mga.distill.train.config import TrainConfig
from mga.distill.train.launch import train
from mga.distill.train.sft_data import build_sft_datasets
from mga.judge.reference import default_reference_path, reference_chunk_rows, reference_pairs_rows
from mga.judge.scores import wilson_ci
from mga.quantize.gguf_export import local_gguf

pytestmark = pytest.mark.real_model
TRAIN_DOCS, EVAL_DOCS = 12, 6


def _valid_pairs(gguf, chunks, out) -> tuple[int, int]:
    generator = LocalGenerator(str(gguf), backend="llamacpp")
    label_pairs(chunks, out, generator, params=GenerationParams(temperature=0.0, max_tokens=360), max_validation_attempts=1)
    rows = read_rows(out)
    return sum(row["status"] == "ok" for row in rows), len(rows)


def test_sft_on_teacher_pairs_lifts_valid_pairs_beyond_the_interval(smollm2_dir, smollm2_f16_gguf, tmp_path):
    reference = default_reference_path("en")
    by_length = sorted(reference_pairs_rows(reference), key=lambda row: len(row["meta"]["raw_text"]))
    held_out = {row["meta"]["docid"] for row in by_length[1::2][:EVAL_DOCS]}  # short documents: a fast test
    train_rows = [row for row in by_length if row["meta"]["docid"] not in held_out][:TRAIN_DOCS]
    chunks = write_rows(tmp_path / "chunks.eval.jsonl",
                        [row for row in reference_chunk_rows(reference) if row["meta"]["docid"] in held_out])
    train_file, _ = build_sft_datasets(write_rows(tmp_path / "kept.jsonl", train_rows), "pairs", tmp_path / "sft",
                                       eval_fraction=0.0)
    cfg = TrainConfig(student=str(smollm2_dir), eval_fraction=0.0, learning_rate=2e-4, num_train_epochs=1,
                      per_device_train_batch_size=1, gradient_accumulation_steps=2, max_length=1536, logging_steps=1,
                      save_strategy="no", report_to="none", use_cpu=True, bf16=False)
    checkpoint = train(train_file, None, tmp_path / "model", cfg, student=str(smollm2_dir), stage="pairs")

    before = _valid_pairs(smollm2_f16_gguf, chunks, tmp_path / "pairs.before.jsonl")
    after = _valid_pairs(local_gguf(checkpoint), chunks, tmp_path / "pairs.after.jsonl")
    assert before[1] == after[1] == EVAL_DOCS
    assert wilson_ci(*after)[0] > wilson_ci(*before)[1], (before, after)
