"""The offline heuristic judge: MiniLM + keyword coverage, bands fitted on the reference set, calibration."""

from __future__ import annotations

import pytest
from mga.distill.cli.main import app
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_rows
from mga.distill.core.language import available_languages, language_pack
from mga.judge.calibrate import agreement, calibrate
from mga.judge.config import JudgeConfig
from mga.judge.fit import fit_report, leave_one_out
from mga.judge.heuristic import HeuristicJudge, band_score, fit_bands
from mga.judge.judging import judge_file
from mga.judge.reference import (
    default_reference_path,
    load_reference,
)
from typer.testing import CliRunner

from tests.test_filters import FAITHFUL, ORIGINAL, UNRELATED, row

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
                                                   row("", status="failed", pair_id=2),
                                                   row(FAITHFUL[:60], status="truncated", pair_id=3)])
    out = judge_file(src, tmp_path / "judged.jsonl", JudgeConfig(backend="heuristic", controls=0))
    rows = read_rows(out)
    verdicts = [r["judge"] for r in rows]
    assert [v["backend"] for v in verdicts] == ["heuristic"] * 4
    assert verdicts[0]["score"] > verdicts[1]["score"]
    assert verdicts[2]["status"] == "unscored" and "failed" in verdicts[2]["reason"]
    # a truncated rewrite is judged but stays marked, so the filters keep it out of the SFT data
    assert verdicts[3]["status"] == "scored" and rows[3]["status"] == "truncated"
    from mga.judge.config import FilterConfig
    from mga.judge.filters import filter_row

    assert filter_row(rows[3], FilterConfig(min_score=1))[:2] == (False, "rewrite_truncated")


def test_agreement_metrics():
    result = agreement([5, 4, 3, 2, 1, 5], [5, 3, 3, 4, 1, None])
    assert (result["n"], result["scored"], result["unscored"]) == (6, 5, 1)
    assert result["exact"] == round(3 / 6, 4) and result["within_1"] == round(4 / 6, 4)
    assert result["confusion"][3][2] == 1 and result["confusion"][1][3] == 1
    assert sum(map(sum, result["confusion"])) == 5 and 0 < result["spearman"] <= 1


def test_leave_one_out_fits_without_the_left_out_document():
    signals = [0.1, 0.2, 0.5, 0.6, 0.9, 0.95, 0.15, 0.55, 0.92]
    scores = [1, 1, 3, 3, 5, 5, 1, 3, 5]
    groups = ["a", "a", "a", "a", "a", "a", "b", "b", "b"]
    assert leave_one_out(signals, scores, groups) == scores  # separable: the other document's fit carries over
    # document b's rewrite scores 1 at a signal where document a's score 5: its own score cannot help it
    outlier = leave_one_out([0.1, 0.2, 0.8, 0.9, 0.15, 0.88, 0.85], [1, 1, 5, 5, 1, 5, 1], [*"aaaacc", "b"])
    assert outlier[-1] == 5
    with pytest.raises(MgaError, match="at least two documents"):
        leave_one_out([0.1, 0.2], [1, 2], ["a", "a"])


@pytest.mark.parametrize("language", available_languages())
def test_pack_bands_and_leave_one_out_figures_match_a_fresh_fit(language):
    """Fails when a reference set changed and `mga judge --calibrate --leave-one-out --write-bands` was not rerun."""
    fitted = language_pack(language).heuristic_judge
    fit = fit_report(language)
    assert fitted.bands is not None and fitted.leave_one_out is not None
    assert fitted.bands == pytest.approx(fit["bands"], abs=2e-3)
    loo = fit["leave_one_out"]
    assert fitted.leave_one_out["n"] == fit["n"] >= 50 and fit["documents"] >= 10
    assert fitted.leave_one_out["exact"] == pytest.approx(loo["exact"], abs=0.03)
    assert fitted.leave_one_out["within_1"] == pytest.approx(loo["within_1"], abs=0.03)
    # the fit is better than chance (20% exact) on documents it never saw, and never better than in-sample
    assert loo["exact"] > 0.3 and loo["spearman"] > 0.5 and loo["exact"] <= fit["in_sample"]["exact"]


def test_a_pack_without_bands_cannot_score_but_says_how_to_fit():
    judge = HeuristicJudge("en", bands=None)
    judge._bands = None
    with pytest.raises(MgaError, match="--leave-one-out --write-bands --set language=en"):
        judge.score("a text", "a text")


def test_cli_leave_one_out_prints_the_fit():
    cli = CliRunner().invoke(app, ["judge", "--calibrate", "--leave-one-out", "--set", "language=ja"])
    assert cli.exit_code == 0, cli.output
    output = " ".join(cli.output.split())
    assert "leave-one-out exact" in output and "ja: bands" in output
    bad = CliRunner().invoke(app, ["judge", "--write-bands"])
    assert "--calibrate" in str(bad.exception)


def test_cli_calibrate_offline_zh():
    assert default_reference_path("zh").is_file()  # shipped: a missing file is a failure, not a skip
    cli = CliRunner().invoke(app, ["judge", "--calibrate", "--backend", "heuristic", "--set", "language=zh"])
    assert cli.exit_code == 0, cli.output


def test_calibration_runs_offline_on_the_reference_set(tmp_path):
    result = calibrate(JudgeConfig(backend="heuristic"), language="en", show=False)
    ref = load_reference(default_reference_path("en"))
    assert result["n"] == sum(len(doc["pairs"]) for doc in ref) and result["unscored"] == 0
    assert sum(map(sum, result["confusion"])) == result["n"]
    assert result["within_1"] >= 0.6 and result["spearman"] is not None and result["spearman"] > 0.3


def test_cli_judge_file_with_heuristic_backend(tmp_path):
    src = write_rows(tmp_path / "rewrites.jsonl", [row(FAITHFUL), row(UNRELATED, pair_id=1)])
    out = tmp_path / "judged.jsonl"
    result = CliRunner().invoke(app, ["judge", "-i", str(src), "-o", str(out), "--backend", "heuristic",
                                      "--set", "judge.controls=0"])  # one document: no negative control possible
    assert result.exit_code == 0, result.output
    assert [r["judge"]["backend"] for r in read_rows(out)] == ["heuristic", "heuristic"]
    missing = CliRunner().invoke(app, ["judge", "--backend", "heuristic"])
    assert "--input and --output" in str(missing.exception)
    bad = CliRunner().invoke(app, ["judge", "-i", str(src), "-o", str(out), "--backend", "oracle"])
    assert "judge.backend" in str(bad.exception)
