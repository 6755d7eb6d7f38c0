"""The loss analysis (`mga analyze loss`): the first-anomaly rule on hand-made sequences, and tiny models.

Tiny models: A is trained on the sample corpus; B_real continues A on the same corpus, B_degenerate continues A
on collapsed text (a few words looped). On held-out 128-token pieces, B_degenerate must show anomalies more
often and earlier (mean first position, documents without one counted at 100%) than B_real. Measured here with
k=1: 43% vs 16% of 44 pieces with an anomaly, mean loss_diff +2.16 vs -0.06 nats/token (k=2 flags none in either:
windows of 6 tokens rarely clear 2 sigma of per-token noise).
"""

from __future__ import annotations

import json
import shutil
import statistics

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.analyze import (
    first_anomaly,
    loss_diff,
    summarize_documents,
    window_size,
)

from tests.tiny_lm import corpus_split, degenerate, train_steps


def test_window_is_five_percent_rounded_down_at_least_one():
    assert [window_size(n) for n in (1, 19, 20, 39, 40, 100, 1000)] == [1, 1, 1, 1, 2, 5, 50]


def test_flat_sequence_has_no_anomaly():
    result = first_anomaly([0.5] * 40, k=2)
    assert result["index"] == -1 and result["percent"] == -1.0 and result["threshold"] == pytest.approx(0.5)


def test_first_window_over_threshold_is_reported_as_percent():
    diff = [0.0] * 100
    diff[60:65] = [10.0] * 5  # w = 5; mu = 0.5, sigma = sqrt(0.05 * 100 - 0.25) = 2.179 -> threshold 4.858 at k=2
    result = first_anomaly(diff, k=2)
    mu, sigma = statistics.fmean(diff), statistics.pstdev(diff)
    assert result["threshold"] == pytest.approx(abs(mu) + 2 * sigma)
    # window means: start 56 -> 2.0, 57 -> 4.0, 58 -> 6.0 > 4.858: the first anomaly starts at 58
    assert (result["index"], result["percent"], result["window"]) == (58, 58.0, 5)
    assert first_anomaly(diff, k=3)["index"] == 59  # threshold 7.04: window mean 8.0 from 59
    assert first_anomaly(diff, k=5)["index"] == -1  # threshold 11.4 is above every window mean


def test_threshold_uses_absolute_mean():
    """A document where B is better everywhere (mu < 0): the threshold is |mu| + k sigma, not mu + k sigma."""
    diff = [-3.0] * 50 + [-1.0] * 5 + [-3.0] * 45  # w = 5, mu = -2.9, sigma = 0.436
    assert first_anomaly(diff, k=1)["index"] == -1  # window mean -1 stays below |mu| + sigma = 3.34
    spiky = [-3.0] * 50 + [4.0] * 5 + [-3.0] * 45  # mu = -2.65, sigma = 1.53 -> threshold 4.18 at k=1 > 4.0
    assert first_anomaly(spiky, k=1)["index"] == -1
    assert first_anomaly(spiky, k=0.5)["index"] == 50  # threshold 3.41


def test_loss_diff_is_synthetic_minus_real_and_checks_lengths():
    assert loss_diff([1.0, 2.0], [1.5, 1.0]) == [0.5, -1.0]
    with pytest.raises(MgaError, match="not the same tokens"):
        loss_diff([1.0], [1.0, 2.0])


def test_summary_share_quartiles_and_means():
    docs = [{"first_anomaly_pct": p, "tokens": t, "mean_loss_diff": m}
            for p, t, m in [(10.0, 100, 1.0), (30.0, 100, 0.0), (-1.0, 200, 0.5), (50.0, 100, -1.0)]]
    s = summarize_documents(docs, k=2)
    assert s["anomaly_share"] == 0.75 and s["with_anomaly"] == 3 and s["documents"] == 4
    assert s["first_position_pct"] == {"q1": 20.0, "median": 30.0, "q3": 40.0}
    assert s["mean_loss_diff_per_token"] == pytest.approx((100 + 0 + 100 - 100) / 500)
    assert s["mean_loss_diff_per_document"] == pytest.approx(0.125)
    assert "2 * sigma" in s["rule"] and s["k"] == 2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A (real), B_real (A + real text), B_degenerate (A + looped text); held-out 128-token pieces."""
    from mga.distill.train.tiny_model import build_tiny_model
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("collapse")
    train, held = corpus_split()
    real = train_steps(build_tiny_model(root / "real", seed=0), [d["text"] for d in train], 100)
    out = {"real": real}
    for name, texts in (("b_real", [d["text"] for d in train]), ("b_degenerate", [degenerate(d["text"]) for d in train])):
        shutil.copytree(real, root / name)
        out[name] = train_steps(root / name, texts, 30, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(real)
    pieces = []
    for doc in held:
        ids = tokenizer(doc["text"], add_special_tokens=False)["input_ids"]
        pieces += [{"id": f"{doc['id']}:{s}", "text": tokenizer.decode(ids[s : s + 128])} for s in range(0, len(ids) - 64, 128)]
    out["texts"] = write_rows(root / "held.jsonl", pieces[:48])
    return out


def test_degenerate_model_shows_anomalies_earlier_and_more_often(models, tmp_path):
    from mga.distill.analyze import analyze_loss

    base = analyze_loss(models["real"], models["b_real"], models["texts"], tmp_path / "real", k=1)
    collapsed = analyze_loss(models["real"], models["b_degenerate"], models["texts"], tmp_path / "degenerate", k=1)
    assert base["documents"] == collapsed["documents"] >= 30
    assert collapsed["anomaly_share"] >= base["anomaly_share"] + 0.05, (base, collapsed)  # measured +0.09 (tokenizers 0.23)
    assert collapsed["mean_loss_diff_per_token"] > base["mean_loss_diff_per_token"] + 1.0

    def first_or_end(folder):  # mean time to the first anomaly, a document without one counted at 100%
        return statistics.fmean(d["first_anomaly_pct"] if d["first_anomaly_pct"] >= 0 else 100.0
                                 for d in read_rows(folder / "documents.jsonl"))

    assert first_or_end(tmp_path / "degenerate") < first_or_end(tmp_path / "real")
    docs = read_rows(tmp_path / "degenerate" / "documents.jsonl")
    for doc in docs:  # every row is the rule applied to its own loss_diff
        assert doc["first_anomaly_index"] == first_anomaly(doc["loss_diff"], k=1)["index"]
        assert doc["tokens"] == len(doc["loss_diff"]) and doc["k"] == 1
    summary = json.loads((tmp_path / "degenerate" / "summary.json").read_text())
    assert summary == collapsed and summary["k"] == 1
    for png in ("loss_diff.png", "first_anomaly.png"):
        assert (tmp_path / "degenerate" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from mga.judge.report import loss_analysis_section

    (title, body), images = loss_analysis_section(tmp_path / "degenerate" / "summary.json")
    assert "Figure 7" in title and [p.name for p in images] == ["loss_diff.png", "first_anomaly.png"]
    share = f"{collapsed['with_anomaly']} ({100 * collapsed['anomaly_share']:.1f}%)"
    assert share in body and "k = 1" in body and f"{collapsed['mean_loss_diff_per_token']:+.4f}" in body


def test_cli_and_refusal_of_different_tokenizers(models, tmp_path):
    from mga.distill.cli.main import app
    from mga.distill.train.tiny_model import build_tiny_model
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["analyze", "loss", "--real-model", str(models["real"]), "--synthetic-model",
                                      str(models["b_real"]), "--texts", str(models["texts"]), "-o", str(tmp_path / "o"),
                                      "--k", "1.5", "--max-length", "64"])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["k"] == 1.5 and summary["max_length"] == 64 and "k=1.5" in result.output
    assert all(d["tokens"] <= 63 for d in read_rows(tmp_path / "o" / "documents.jsonl"))

    other_corpus = write_rows(tmp_path / "other.jsonl", [{"text": "completely different words " * 50 + str(i)} for i in range(5)])
    other = build_tiny_model(tmp_path / "other-tok", corpus=other_corpus)
    with pytest.raises(MgaError, match="do not share a tokenizer"):
        from mga.distill.analyze import analyze_loss

        analyze_loss(models["real"], other, models["texts"], tmp_path / "x")
    refused = CliRunner().invoke(app, ["analyze", "loss", "--real-model", str(models["real"]), "--synthetic-model",
                                       str(other), "--texts", str(models["texts"]), "-o", str(tmp_path / "y")])
    assert isinstance(refused.exception, MgaError)
    assert not (tmp_path / "x").exists()


def test_recipe_analyze_section_runs_the_stage(models, tmp_path):
    """`analyze:` in a recipe is validated once and its stage writes what the report section reads."""
    from mga.distill.pipeline import stages
    from mga.distill.pipeline.recipe import validate_recipe

    cfg = validate_recipe({"name": "t", "analyze": {"real_model": str(models["real"]), "synthetic_model":
                                                    str(models["b_degenerate"]), "texts": str(models["texts"]), "k": 1}},
                          source="test")
    info = stages.analyze_loss(tmp_path / "loss", cfg)
    summary = json.loads((tmp_path / "loss" / "summary.json").read_text())
    assert info == {"rows_out": summary["documents"], "anomaly_share": summary["anomaly_share"]} and summary["k"] == 1
    with pytest.raises(MgaError, match="analyze"):
        validate_recipe({"name": "t", "analyze": {"real_model": "a", "texts": "t"}}, source="test")
