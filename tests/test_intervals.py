"""Intervals on the paper's Table 1 counts, checked against computations written independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mga.judge.scores import items_for_width, paired_diff_ci, summarize, wilson_ci
from scipy.stats import binomtest, norm

TOTAL = 15_355
LABELER = (4120, 7143, 3034, 661, 214)  # scores 5..1; 183 unscored
TOOL = (3788, 7124, 3224, 736, 285)  # 198 unscored


def _row(i: int, score: int | None, variant: str = "base") -> dict:
    verdict = {"score": score, "status": "scored" if score else "unscored", "backend": "llm", "model": "j"}
    return {"meta": {"docid": f"d{i // 5}", "chunk_id": 0, "pair_id": i % 5}, "variant": variant, "judge": verdict}


def _rows(counts: tuple[int, ...], order: list[int] | None = None) -> list[dict]:
    scores = [s for s, n in zip((5, 4, 3, 2, 1), counts) for _ in range(n)]
    scores += [None] * (TOTAL - len(scores))
    order = order or list(range(TOTAL))
    return [_row(i, scores[j]) for i, j in enumerate(order)]


def test_wilson_interval_of_table1_rates_matches_scipy():
    for counts, rate in ((LABELER, 93.11), (TOOL, 92.06)):
        s = summarize(_rows(counts))
        assert s["rate_ge3"] == rate
        ci = binomtest(sum(counts[:3]), TOTAL).proportion_ci(confidence_level=0.95, method="wilson")
        assert s["rate_ge3_ci95"] == pytest.approx([100 * ci.low, 100 * ci.high], abs=0.006)
        assert s["rate_ge3_ci95"][0] < rate < s["rate_ge3_ci95"][1]
    assert summarize(_rows(LABELER))["rate_ge3_ci95"] == [92.70, 93.50]


def test_wilson_interval_by_a_second_formula_and_at_the_edges():
    # Wilson's interval is where |p_hat - p| = z * sqrt(p (1 - p) / n): solve that quadratic in p directly
    for k, n in ((0, 10), (10, 10), (3, 7), (14_297, TOTAL)):
        z, p_hat = norm.ppf(0.975), k / n
        a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
        roots = sorted(((-b - math.sqrt(b * b - 4 * a * c)) / (2 * a), (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))
        assert wilson_ci(k, n) == pytest.approx([100 * roots[0], 100 * roots[1]], abs=0.006)
    assert wilson_ci(0, 0) == [0.0, 100.0]


def test_table2_shares_carry_intervals():
    s = summarize(_rows((6814, 5220, 2384, 520, 227)))  # Strict
    assert (s["le2"], s["ge4"], s["eq5"]) == (4.86, 78.37, 44.38)
    for share in ("le2", "ge4", "eq5"):
        low, high = s[f"{share}_ci95"]
        assert low < s[share] < high and high - low < 2


def test_paired_diff_interval_on_table1_counts_matches_the_paired_normal_interval():
    """Pair the paper's two models so that a known number of items disagree; Diff is -1.05 either way."""
    rng = np.random.default_rng(0)
    order = list(range(TOTAL))
    labeler = _rows(LABELER)
    # shuffle the SLM's answers over the items: many items where exactly one model passes
    shuffled = [int(i) for i in rng.permutation(TOTAL)]
    tool = _rows(TOOL, shuffled)
    result = paired_diff_ci(tool, labeler)
    assert result["items"] == TOTAL and result["diff"] == -1.05
    b, c, n = result["only_model"], result["only_reference"], TOTAL
    assert b > 500 and c > 500 and b - c == 14_136 - 14_297  # discordant counts hold the difference
    # independent: the paired (McNemar-type) Wald interval of a difference of proportions
    d = (b - c) / n
    se = math.sqrt((b + c) / n - d * d) / math.sqrt(n)
    wald = [100 * (d - norm.ppf(0.975) * se), 100 * (d + norm.ppf(0.975) * se)]
    assert result["ci95"] == pytest.approx(wald, abs=0.05)
    # the pairing matters: perfectly concordant answers give a much narrower interval than shuffled ones
    concordant = paired_diff_ci(_rows(TOOL, order), labeler)
    assert concordant["diff"] == -1.05
    assert concordant["ci95"][1] - concordant["ci95"][0] < (result["ci95"][1] - result["ci95"][0]) / 2
    # a fixed seed: the same interval every time
    assert paired_diff_ci(tool, labeler)["ci95"] == result["ci95"]


def test_paired_diff_interval_by_resampling_items():
    """A naive bootstrap that resamples the items themselves agrees with the multinomial shortcut."""
    rng = np.random.default_rng(1)
    a = [_row(i, int(s)) for i, s in enumerate(rng.choice([1, 3, 5], size=400, p=[0.3, 0.3, 0.4]))]
    b = [_row(i, int(s)) for i, s in enumerate(rng.choice([1, 3, 5], size=400, p=[0.2, 0.4, 0.4]))]
    pa = np.array([(r["judge"]["score"] or 0) >= 3 for r in a], dtype=float)
    pb = np.array([(r["judge"]["score"] or 0) >= 3 for r in b], dtype=float)
    idx = np.random.default_rng(2).integers(0, 400, size=(20_000, 400))
    diffs = 100 * (pa[idx].mean(axis=1) - pb[idx].mean(axis=1))
    naive = np.percentile(diffs, [2.5, 97.5])
    assert paired_diff_ci(a, b)["ci95"] == pytest.approx(list(naive), abs=0.5)


def test_items_needed_to_reach_a_target_width():
    assert items_for_width(400, 8.0, 1.0) == 400 * 64
    assert items_for_width(400, 0.5, 1.0) == 400
    assert items_for_width(400, 2.0, 0.0) is None
