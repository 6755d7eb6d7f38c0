"""The paper's iterative filtering, as plain functions: rounds that accumulate SFT data until the SLM matches.

Each round trains SLM-1 (pairs) and SLM-2 (rewrites) on the teacher's kept examples of the train documents
plus every good SLM answer gathered so far, lets them answer the eval prompts (Table 1's "SLM round N"),
and, unless it stops, lets them answer the next part of the pool: documents no earlier round answered
(`pool_parts` splits the pool without replacement). Good answers - rewrites judged >= 3 that pass the
filters, stage-1 answers with valid, distinct pairs - join the next round's SFT data.

The loop stops when the SLM is within `target_gap` points of the teacher AND SLM-1's valid-pairs rate is at
least `target_pairs_valid`, at `max_rounds`, when the pool is used up, or when a round adds no new example
(retraining on identical data would change nothing). While the judge fails its controls the gap means
nothing: the loop then stops with "judge failed its controls", whatever the gap. `run_loop` drives `RoundSteps`, which the pipeline
implements with its stages and a test may implement with a scripted stand-in student.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mga.distill.core.markdown import records_table
from mga.distill.core.schema import chunk_key, rewrite_key
from mga.judge.scores import paired_diff_ci, rate_ge3, summarize, wilson_ci

STAGES = ("pairs", "rewrite")
JUDGE_FAILED = "judge failed its controls"
KEYS = {"pairs": chunk_key, "rewrite": rewrite_key}


def pool_parts(pool: Iterable[str], *, per_round: int | None, max_rounds: int, seed: int) -> list[list[str]]:
    """Disjoint, seeded parts of the pool documents, one per augmenting round (all but the last round).

    `per_round` documents each (the last part may be smaller); None splits the pool evenly over
    `max_rounds - 1` rounds."""
    docs = sorted(pool)
    random.Random(seed).shuffle(docs)
    if not docs or max_rounds < 2:
        return []
    size = per_round or math.ceil(len(docs) / (max_rounds - 1))
    return [docs[i:i + size] for i in range(0, len(docs), size)]


class RoundSteps(Protocol):
    def untrained(self) -> Any:
        """The student before any training, as checkpoints by stage (round 0, the baseline)."""

    def train(self, r: int, extra: dict[str, list[dict[str, Any]]]) -> tuple[Any, dict[str, dict[str, int]]]:
        """Train both tool models on the teacher's examples plus `extra`; (checkpoints, examples by stage and
        source: {"pairs": {"teacher": n, "slm": m}, "rewrite": {...}})."""

    def evaluate(self, r: int, checkpoints: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The SLMs answer the eval prompts: (judged SLM-2 rewrites, SLM-1 pairs rows)."""

    def augment(self, r: int, checkpoints: Any, docs: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The SLMs answer the pool documents `docs`; their good answers by stage."""


def pairs_valid(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(valid, total) of SLM-1 answers: valid = JSON with the required number of distinct pairs."""
    return sum(row.get("status") == "ok" for row in rows), len(rows)


def measure(teacher_eval: list[dict[str, Any]], slm_eval: list[dict[str, Any]], pairs_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Teacher and SLM Rate(>=3) with Wilson intervals, the gap with its paired interval, SLM-1's valid pairs."""
    teacher, slm = summarize(teacher_eval), summarize(slm_eval)
    teacher_rate, slm_rate = rate_ge3(teacher_eval), rate_ge3(slm_eval)
    paired = paired_diff_ci(teacher_eval, slm_eval)  # teacher minus SLM: the gap
    valid, total = pairs_valid(pairs_rows)
    return {
        "teacher_rate": round(teacher_rate, 2), "teacher_rate_ci95": teacher["rate_ge3_ci95"],
        "slm_rate": round(slm_rate, 2), "slm_rate_ci95": slm["rate_ge3_ci95"],
        "gap": round(teacher_rate - slm_rate, 2), "gap_ci95": paired["ci95"], "eval_items": len(slm_eval),
        "pairs_valid_rate": round(100 * valid / total, 2) if total else 0.0, "pairs_valid_ci95": wilson_ci(valid, total),
    }


def target_reached(record: dict[str, Any], target_gap: float, target_pairs_valid: float) -> str | None:
    if record["gap"] <= target_gap and record["pairs_valid_rate"] >= target_pairs_valid:
        return (f"target reached: gap {record['gap']:.2f} <= {target_gap:.2f} points and SLM-1 valid pairs "
                f"{record['pairs_valid_rate']:.2f}% >= {target_pairs_valid:.2f}%")
    return None


def _no_examples() -> dict[str, Any]:
    return {stage: {"teacher": 0, "slm": 0} for stage in STAGES}


def run_loop(steps: RoundSteps, teacher_eval: list[dict[str, Any]], parts: list[list[str]], *, max_rounds: int,
             target_gap: float, target_pairs_valid: float, baseline: bool = True,
             judge_failed: Callable[[], list[str]] = list) -> tuple[Any, list[dict[str, Any]], str]:
    """Rounds until a stop rule holds; (last checkpoints, one record per round, why the loop stopped).

    With `baseline`, round 0 is the untrained student on the same eval items: what training changed is then
    measured, not assumed. Round 0 never stops the loop on the gap (nothing was distilled yet); it is answered
    after round 1's training, so that `--until train` still trains.
    `judge_failed()` names the judged stages whose controls failed so far (checked after each judging)."""
    extra: dict[str, dict[str, dict[str, Any]]] = {stage: {} for stage in STAGES}
    answered: set[str] = set()
    rounds: list[dict[str, Any]] = []
    for r in range(1, max_rounds + 1):
        checkpoints, examples = steps.train(r, {stage: list(rows.values()) for stage, rows in extra.items()})
        if r == 1 and baseline:
            slm_eval, pairs_rows = steps.evaluate(0, steps.untrained())
            rounds.append({"round": 0, "sft_examples": _no_examples(), **measure(teacher_eval, slm_eval, pairs_rows),
                           "pool_documents": 0, "examples_added": {stage: 0 for stage in STAGES},
                           "stop": JUDGE_FAILED if judge_failed() else None})
            if rounds[-1]["stop"]:
                return checkpoints, rounds, JUDGE_FAILED
        slm_eval, pairs_rows = steps.evaluate(r, checkpoints)
        record = {"round": r, "sft_examples": examples, **measure(teacher_eval, slm_eval, pairs_rows),
                  "pool_documents": 0, "examples_added": {stage: 0 for stage in STAGES}}
        reason = JUDGE_FAILED if judge_failed() else target_reached(record, target_gap, target_pairs_valid)
        if reason is None and r == max_rounds:
            reason = f"max rounds reached ({max_rounds})"
        if reason is None and r > len(parts):
            reason = f"pool used up: all {len(answered)} pool documents answered"
        if reason is None:
            docs = parts[r - 1]
            if answered & set(docs):
                raise RuntimeError(f"round {r}: pool documents answered twice: {sorted(answered & set(docs))[:3]}")
            answered |= set(docs)
            new = steps.augment(r, checkpoints, docs)
            for stage in STAGES:
                fresh = {KEYS[stage](row): row for row in new.get(stage, []) if KEYS[stage](row) not in extra[stage]}
                extra[stage].update(fresh)
                record["examples_added"][stage] = len(fresh)
            record["pool_documents"] = len(docs)
            if judge_failed():
                reason = JUDGE_FAILED
            elif not any(record["examples_added"].values()):
                reason = f"round {r} added no new example: retraining on identical data would change nothing"
        record["stop"] = reason
        rounds.append(record)
        if reason:
            return checkpoints, rounds, reason
    raise AssertionError("unreachable: the last round always stops")


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def rounds_markdown(rounds: list[dict[str, Any]], stop_reason: str) -> str:
    """The report's rounds table: SFT examples by source, pool documents, examples added, rates, gap, stop."""
    records = []
    for x in rounds:
        sft = x["sft_examples"]
        records.append({
            "round": f"{x['round']} (untrained)" if x["round"] == 0 else x["round"],
            "SFT pairs (teacher + SLM)": f"{sft['pairs']['teacher']} + {sft['pairs']['slm']}",
            "SFT rewrites (teacher + SLM)": f"{sft['rewrite']['teacher']} + {sft['rewrite']['slm']}",
            "pool docs answered": x["pool_documents"],
            "added (pairs / rewrites)": f"{x['examples_added']['pairs']} / {x['examples_added']['rewrite']}",
            "teacher Rate(≥3)": f"{x['teacher_rate']:.2f}% {_ci(x['teacher_rate_ci95'])}",
            "SLM Rate(≥3)": f"{x['slm_rate']:.2f}% {_ci(x['slm_rate_ci95'])}",
            "gap (points)": f"{x['gap']:+.2f} {_ci(x['gap_ci95'])}",
            "SLM-1 valid pairs": f"{x['pairs_valid_rate']:.2f}% {_ci(x['pairs_valid_ci95'])}",
            "stop": x["stop"] or "",
        })
    return records_table(records) + f"\n\n**Stopped:** {stop_reason}."
