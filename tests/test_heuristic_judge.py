"""The offline heuristic judge: MiniLM + keyword coverage, bands fitted on the reference set, calibration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.io import read_rows, write_rows
from judge.calibrate import agreement, calibrate, default_reference
from judge.config import JudgeConfig
from judge.heuristic import BANDS, HeuristicJudge, band_score, fit_bands, refit_bands
from judge.judging import judge_file
from tests.test_filters import FAITHFUL, ORIGINAL, UNRELATED, row

needs_reference = pytest.mark.skipif(not default_reference("en").is_file(), reason="reference set not bundled yet")


def test_fit_bands_recovers_a_monotone_mapping_and_band_score_applies_it():
    signals = [0.05, 0.1, 0.25, 0.3, 0.45, 0.5, 0.62, 0.7, 0.85, 0.9]
    scores = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    bands = fit_bands(signals, scores)
    assert list(bands) == sorted(bands)
    assert [band_score(s, bands) for s in signals] == scores
    noisy = fit_bands(signals, [1, 2, 1, 2, 3, 3, 5, 4, 5, 5])  # still ordered, still mostly right
    assert list(noisy) == sorted(noisy)
    assert sum(band_score(s, noisy) == y for s, y in zip(signals, [1, 2, 1, 2, 3, 3, 5, 4, 5, 5])) >= 7


def test_heuristic_ranks_faithful_above_unrelated_and_says_what_it_is():
    judge = HeuristicJudge("en")
    good, analysis = judge.score(ORIGINAL, FAITHFUL)
    bad, _ = judge.score(ORIGINAL, UNRELATED)
    assert good > bad and bad <= 2 and good >= 4
    assert "heuristic" in analysis and "not an LLM" in analysis


def test_judge_file_heuristic_backend_labels_rows(tmp_path):
    src = write_rows(tmp_path / "rewrites.jsonl", [row(FAITHFUL), row(UNRELATED, pair_id=1),
                                                   row("", status="failed", pair_id=2)])
    out = judge_file(src, tmp_path / "judged.jsonl", JudgeConfig(backend="heuristic"))
    verdicts = [r["judge"] for r in read_rows(out)]
    assert [v["backend"] for v in verdicts] == ["heuristic"] * 3
    assert verdicts[0]["score"] > verdicts[1]["score"]
    assert verdicts[2]["status"] == "unscored" and "failed" in verdicts[2]["reason"]


def test_agreement_metrics():
    result = agreement([5, 4, 3, 2, 1, 5], [5, 3, 3, 4, 1, None])
    assert (result["n"], result["scored"], result["unscored"]) == (6, 5, 1)
    assert result["exact"] == round(3 / 6, 4) and result["within_1"] == round(4 / 6, 4)
    assert result["confusion"][3][2] == 1 and result["confusion"][1][3] == 1
    assert sum(map(sum, result["confusion"])) == 5 and 0 < result["spearman"] <= 1


@needs_reference
@pytest.mark.parametrize("language", ["en", "zh"])
def test_stored_bands_are_the_fit_on_the_reference_set(language):
    assert refit_bands(language=language) == pytest.approx(BANDS[language], abs=1e-3)


@needs_reference
def test_calibration_runs_offline_on_the_reference_set(tmp_path):
    result = calibrate(JudgeConfig(backend="heuristic"), language="en", show=False)
    ref = [r for r in read_rows(default_reference("en"))]
    assert result["n"] == 5 * len(ref) and result["unscored"] == 0
    assert sum(map(sum, result["confusion"])) == result["n"]
    assert result["within_1"] >= 0.6 and result["spearman"] is not None and result["spearman"] > 0.3
    cli = CliRunner().invoke(app, ["judge", "--calibrate", "--backend", "heuristic"])
    assert cli.exit_code == 0, cli.output


def test_cli_judge_file_with_heuristic_backend(tmp_path):
    src = write_rows(tmp_path / "rewrites.jsonl", [row(FAITHFUL), row(UNRELATED, pair_id=1)])
    out = tmp_path / "judged.jsonl"
    result = CliRunner().invoke(app, ["judge", "-i", str(src), "-o", str(out), "--backend", "heuristic"])
    assert result.exit_code == 0, result.output
    assert [r["judge"]["backend"] for r in read_rows(out)] == ["heuristic", "heuristic"]
    missing = CliRunner().invoke(app, ["judge", "--backend", "heuristic"])
    assert "--input and --output" in str(missing.exception)
    bad = CliRunner().invoke(app, ["judge", "-i", str(src), "-o", str(out), "--backend", "oracle"])
    assert "judge.backend" in str(bad.exception)
