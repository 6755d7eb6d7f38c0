"""Each check of `control_verdict` (judge/controls.py) is pinned: a judge that misses exactly one threshold
fails on exactly that check, one at the threshold passes, and the thresholds are the config's."""

from __future__ import annotations

import pytest
from mga.judge.config import JudgeConfig
from mga.judge.controls import control_verdict


def _judged(positive: list[int], negative: list[int]) -> list[dict]:
    """Judged control rows with these scores (negatives alternate between the two negative kinds)."""
    kinds = [("positive", s) for s in positive]
    kinds += [("other_document" if i % 2 else "destroyed", s) for i, s in enumerate(negative)]
    return [{"control": {"kind": kind}, "judge": {"status": "scored", "score": score}} for kind, score in kinds]


FAILS = {
    "positive": ([5, 5, 5, 2, 2], [1] * 10),  # 60% of positives >= 3; gap 2.8, negatives all <= 2
    "negative": ([5] * 5, [1] * 7 + [5] * 3),  # 70% of negatives <= 2; gap 2.8
    "separation": ([3] * 5, [2] * 10),  # every control on the right side of 3, but a gap of 1.0
}
AT_THRESHOLD = {
    "positive": ([5, 5, 5, 5, 2], [1] * 10),  # exactly 80%
    "negative": ([5] * 5, [1] * 8 + [5] * 2),  # exactly 80%
    "separation": ([4] * 5, [2] * 10),  # a gap of exactly 2.0
}
MESSAGE = {"positive": "positive controls scored >= 3: 60% < 80%",
           "negative": "negative controls scored <= 2: 70% < 80%",
           "separation": "mean score gap positive - negative: +1.00 < 2.00"}


@pytest.mark.parametrize("check", FAILS)
def test_missing_one_threshold_fails_that_check_only(check):
    verdict = control_verdict(_judged(*FAILS[check]))
    assert not verdict["passed"] and verdict["failures"] == [MESSAGE[check]]


@pytest.mark.parametrize("check", AT_THRESHOLD)
def test_a_judge_at_the_threshold_passes(check):
    verdict = control_verdict(_judged(*AT_THRESHOLD[check]))
    assert verdict["passed"] and verdict["failures"] == []


def test_the_thresholds_are_the_configs():
    lenient = JudgeConfig(min_positive_ge3=0.6, min_negative_le2=0.7, min_control_separation=1.0)
    assert all(control_verdict(_judged(*case), lenient)["passed"] for case in FAILS.values())
    strict = JudgeConfig(min_positive_ge3=1.0, min_negative_le2=1.0, min_control_separation=3.5)
    assert all(not control_verdict(_judged(*case), strict)["passed"] for case in AT_THRESHOLD.values())


def test_no_negative_control_fails():
    verdict = control_verdict(_judged([5] * 5, []))
    assert not verdict["passed"] and verdict["failures"][0] == "no negative control (needs documents with at least two docids)"
