"""The loop accumulates: each round answers pool documents no round answered before, good answers join the
next round's SFT data, and it stops on the target (gap and valid pairs), max rounds, an empty pool, or a round
that adds nothing. A scripted stand-in student plays the SLMs (tiny models cannot improve)."""

from __future__ import annotations

import pytest
from mga.distill.pipeline.iterative_filtering import pool_parts, rounds_markdown, run_loop

TEACHER_EVAL = [{"meta": {"docid": f"e{i}", "chunk_id": 0, "pair_id": 0}, "variant": "base",
                 "judge": {"score": 4, "status": "scored"}} for i in range(20)]


class ScriptedStudent:
    """Passes `pass_rate(r)` of the eval items in round r; answers pool documents well (`good_pool`)."""

    def __init__(self, pass_rate=lambda r: 0.5, good_pool=True, pairs_valid=1.0, teacher_examples=10):
        self.pass_rate, self.good_pool, self.pairs_valid = pass_rate, good_pool, pairs_valid
        self.teacher_examples = teacher_examples
        self.trained_on: list[int] = []
        self.pool_seen: list[list[str]] = []

    def untrained(self):
        return "ckpt-0"

    def train(self, r, extra):
        self.trained_on.append(self.teacher_examples + len(extra["rewrite"]))
        return f"ckpt-{r}", {s: {"teacher": self.teacher_examples, "slm": len(extra[s])} for s in extra}

    def evaluate(self, r, checkpoints):
        passing = round(self.pass_rate(r) * len(TEACHER_EVAL))
        rows = [{**row, "judge": {"score": 5 if i < passing else 1, "status": "scored"}} for i, row in enumerate(TEACHER_EVAL)]
        valid = round(self.pairs_valid * 4)
        pairs = [{"status": "ok" if i < valid else "failed"} for i in range(4)]
        return rows, pairs

    def augment(self, r, checkpoints, docs):
        self.pool_seen.append(list(docs))
        if not self.good_pool:
            return {"pairs": [], "rewrite": []}
        return {"pairs": [{"meta": {"docid": d, "chunk_id": 0}, "status": "ok"} for d in docs],
                "rewrite": [{"meta": {"docid": d, "chunk_id": 0, "pair_id": p}, "variant": "base"}
                            for d in docs for p in range(3)]}


def loop(student, parts, **kwargs):
    options = {"max_rounds": 3, "target_gap": 1.0, "target_pairs_valid": 90.0, "baseline": False, **kwargs}
    return run_loop(student, TEACHER_EVAL, parts, **options)


def test_three_rounds_accumulate_and_never_reuse_pool_documents():
    parts = pool_parts({f"p{i}" for i in range(6)}, per_round=2, max_rounds=3, seed=0)
    student = ScriptedStudent()
    _, rounds, stop = loop(student, parts)
    assert len(rounds) == 3 and stop == "max rounds reached (3)"
    assert student.trained_on[0] < student.trained_on[1] < student.trained_on[2]  # strictly more each round
    assert [x["sft_examples"]["rewrite"]["slm"] for x in rounds] == [0, 6, 12]
    assert [x["sft_examples"]["pairs"]["slm"] for x in rounds] == [0, 2, 4]
    assert [x["examples_added"] for x in rounds[:2]] == [{"pairs": 2, "rewrite": 6}] * 2
    seen = [d for part in student.pool_seen for d in part]
    assert len(seen) == len(set(seen)) == 4  # rounds 1 and 2 answered 2 new documents each
    assert rounds[2]["pool_documents"] == 0 and rounds[0]["pool_documents"] == 2
    assert rounds[0]["gap"] == 50.0 and rounds[0]["gap_ci95"][0] > 20  # teacher 100%, SLM 50%
    assert rounds[0]["slm_rate_ci95"][0] < 50 < rounds[0]["slm_rate_ci95"][1]
    table = rounds_markdown(rounds, stop)
    assert "| 3 | 10 + 4 | 10 + 12 | 0 | 0 / 0 |" in table and "**Stopped:** max rounds reached (3)." in table


def test_pool_parts_are_disjoint_and_cover_the_pool():
    parts = pool_parts({f"p{i}" for i in range(7)}, per_round=None, max_rounds=3, seed=1)
    assert [len(p) for p in parts] == [4, 3]
    assert sorted(d for p in parts for d in p) == sorted(f"p{i}" for i in range(7))
    assert pool_parts({"a", "b"}, per_round=5, max_rounds=1, seed=0) == []


def test_stops_when_the_gap_and_valid_pairs_reach_the_target():
    _, rounds, stop = loop(ScriptedStudent(pass_rate=lambda r: 0.5 + 0.25 * r), [["p1"], ["p2"]], max_rounds=5)
    assert len(rounds) == 2 and stop.startswith("target reached: gap 0.00")
    # the gap alone is not enough: SLM-1 must also write valid pairs
    _, rounds, stop = loop(ScriptedStudent(pass_rate=lambda r: 1.0, pairs_valid=0.5), [["p1"], ["p2"]])
    assert len(rounds) == 3 and stop.startswith("max rounds") and rounds[0]["pairs_valid_rate"] == 50.0


def test_min_rounds_keeps_the_target_from_stopping_earlier_rounds():
    student = ScriptedStudent(pass_rate=lambda r: 1.0)
    _, rounds, stop = loop(student, [["p1"], ["p2"]], min_rounds=2)
    assert len(rounds) == 2 and rounds[0]["stop"] is None and rounds[0]["examples_added"]["pairs"] == 1
    assert stop.startswith("target reached") and student.pool_seen == [["p1"]]  # round 2 trained on round 1's pool
    _, rounds, stop = loop(ScriptedStudent(pass_rate=lambda r: 1.0), [["p1"], ["p2"]])
    assert len(rounds) == 1 and stop.startswith("target reached")


def test_min_rounds_above_max_rounds_is_a_config_error():
    from mga.distill.pipeline.recipe import LoopConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"min_rounds \(3\) is more than max_rounds \(2\)"):
        LoopConfig(max_rounds=2, min_rounds=3)


def test_stops_when_the_pool_is_used_up_or_a_round_adds_nothing():
    _, rounds, stop = loop(ScriptedStudent(), [["p1"]], max_rounds=5)
    assert len(rounds) == 2 and stop == "pool used up: all 1 pool documents answered"
    student = ScriptedStudent(good_pool=False)
    _, rounds, stop = loop(student, [["p1"], ["p2"]])
    assert len(rounds) == 1 and "added no new example" in stop
    assert student.trained_on == [10]  # no retraining on identical data


def test_a_pool_document_answered_twice_is_an_error():
    with pytest.raises(RuntimeError, match="answered twice"):
        loop(ScriptedStudent(), [["p1"], ["p1"]])


def test_round_zero_is_the_untrained_student_on_the_same_items_and_never_stops_the_loop():
    student = ScriptedStudent(pass_rate=lambda r: 1.0 if r == 0 else 0.5)  # untrained already "matches": no stop
    _, rounds, stop = loop(student, [["p1"], ["p2"]], baseline=True)
    assert [x["round"] for x in rounds] == [0, 1, 2, 3] and stop == "max rounds reached (3)"
    assert rounds[0]["gap"] == 0.0 and rounds[0]["stop"] is None and rounds[0]["eval_items"] == len(TEACHER_EVAL)
    assert rounds[0]["sft_examples"] == {s: {"teacher": 0, "slm": 0} for s in ("pairs", "rewrite")}
    assert rounds[0]["pool_documents"] == 0 and student.trained_on == [10, 13, 16]  # round 0 trains nothing
    assert "| 0 (untrained) | 0 + 0 | 0 + 0 |" in rounds_markdown(rounds, stop)


def test_a_judge_failing_at_round_zero_stops_before_round_one_is_judged():
    student = ScriptedStudent()
    _, rounds, stop = loop(student, [["p1"]], baseline=True, judge_failed=lambda: ["judge-slm@eval.round-0"])
    assert stop == "judge failed its controls" and [x["round"] for x in rounds] == [0]
    assert student.trained_on == [10] and student.pool_seen == []  # round 1 trained (`--until train`), nothing more
