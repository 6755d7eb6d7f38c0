"""The paper's iterative filtering (step 5), one loop that owns its state: rounds that accumulate SFT data
until the SLM matches the teacher.

Each round trains SLM-1 (pairs) and SLM-2 (rewrites) on the teacher's kept examples of the train documents
plus every good SLM answer gathered so far, lets them answer the eval prompts (Table 1's "SLM round N"),
and, unless it stops, lets them answer the next part of the pool: documents no earlier round answered
(`pool_parts` splits the pool without replacement). Good answers - rewrites judged >= 3 that pass the
filters, stage-1 answers with valid, distinct pairs - join the next round's SFT data. Round 0 is the untrained
student on the same eval items, so what training changed is measured, not assumed.

The loop stops when the SLM is within `target_gap` points of the teacher AND SLM-1's valid-pairs rate is at
least `target_pairs_valid`, at `max_rounds`, when the pool is used up, or when a round adds no new example
(retraining on identical data would change nothing). While the judge fails its controls the gap means
nothing: the loop then stops with "judge failed its controls", whatever the gap.

`run_loop` is the loop itself over any `RoundSteps` (a test may script a stand-in student). `IterativeFiltering`
is its steps as stages of `mga run` (`train@`, `answer@`, `judge-slm@`, `augment@`, `filter@slm-pool`): its
inputs are explicit (`LoopInputs`), the run's stages it shares with the rest of `mga run` come through
`RunStages`, and what it gathers (each round's judged eval answers, loss curves, notes, `rounds.json`) is its own.
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mga.distill.core.console import console
from mga.distill.core.io import read_rows
from mga.distill.core.markdown import records_table
from mga.distill.core.schema import TOOL_MODELS, chunk_key, rewrite_key
from mga.distill.pipeline import stages
from mga.distill.pipeline.layout import RunLayout
from mga.distill.pipeline.recipe import RunConfig
from mga.distill.pipeline.runner import Runner
from mga.distill.pipeline.stages import Checkpoint
from mga.distill.train.base_model import BASE_MODELS, gguf_path
from mga.judge.scores import paired_diff_ci, rate_ge3, summarize, wilson_ci

JUDGE_FAILED = "judge failed its controls"
KEYS = {"pairs": chunk_key, "rewrite": rewrite_key}
REGIME = ("Table 1's \"SLM round N\" is trained on the teacher's kept examples of the train documents plus the good "
          "SLM answers to the pool documents of rounds 1..N-1 (each pool document answered once).")


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
    """What a round does: `IterativeFiltering` runs it as stages, a test may script a stand-in student."""

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
    return {stage: {"teacher": 0, "slm": 0} for stage in TOOL_MODELS}


def run_loop(steps: RoundSteps, teacher_eval: list[dict[str, Any]], parts: list[list[str]], *, max_rounds: int,
             target_gap: float, target_pairs_valid: float, baseline: bool = True, min_rounds: int = 1,
             judge_failed: Callable[[], list[str]] = list) -> tuple[Any, list[dict[str, Any]], str]:
    """Rounds until a stop rule holds; (last checkpoints, one record per round, why the loop stopped).

    With `baseline`, round 0 is the untrained student on the same eval items: what training changed is then
    measured, not assumed. Round 0 never stops the loop on the gap (nothing was distilled yet); it is answered
    after round 1's training, so that `--until train` still trains. The target stops no round before `min_rounds`.
    `judge_failed()` names the judged stages whose controls failed so far (checked after each judging)."""
    extra: dict[str, dict[str, dict[str, Any]]] = {stage: {} for stage in TOOL_MODELS}
    answered: set[str] = set()
    rounds: list[dict[str, Any]] = []
    for r in range(1, max_rounds + 1):
        checkpoints, examples = steps.train(r, {stage: list(rows.values()) for stage, rows in extra.items()})
        if r == 1 and baseline:
            slm_eval, pairs_rows = steps.evaluate(0, steps.untrained())
            rounds.append({"round": 0, "sft_examples": _no_examples(), **measure(teacher_eval, slm_eval, pairs_rows),
                           "pool_documents": 0, "examples_added": {stage: 0 for stage in TOOL_MODELS},
                           "stop": JUDGE_FAILED if judge_failed() else None})
            if rounds[-1]["stop"]:
                return checkpoints, rounds, JUDGE_FAILED
        slm_eval, pairs_rows = steps.evaluate(r, checkpoints)
        record = {"round": r, "sft_examples": examples, **measure(teacher_eval, slm_eval, pairs_rows),
                  "pool_documents": 0, "examples_added": {stage: 0 for stage in TOOL_MODELS}}
        reason = JUDGE_FAILED if judge_failed() else None
        if reason is None and r >= min_rounds:
            reason = target_reached(record, target_gap, target_pairs_valid)
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
            for stage in TOOL_MODELS:
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


# -- the loop as stages of `mga run` ------------------------------------------------------------------------


class RunStages(Protocol):
    """The run's stages the loop shares with the rest of `mga run` (`Pipeline` implements them): training a tool
    model, judging, filtering, and the generator of a checkpoint."""

    def train(self, tag: str, stage: str, teacher_rows: Path, train_docs: set[str],
              extra: list[dict[str, Any]]) -> tuple[Checkpoint, dict[str, Any]]:
        """Train one tool model; (its checkpoint, what its training stage recorded)."""

    def judge(self, rows: Path, out: Path, name: str) -> Path:
        """The judge's scores of `rows` (with its controls) as stage `name`."""

    def filter(self, judged: Path, name: str) -> Path:
        """The kept rows of `judged` as stage `filter@name`."""

    def slm(self, checkpoint: Checkpoint, backend: str | None = None) -> Callable[[], Any]:
        """The generator factory of a tool model."""

    def failed_controls(self) -> list[str]:
        """The judged stages whose controls failed so far."""


@dataclass(frozen=True)
class LoopInputs:
    """What the loop reads: the teacher's kept rows per tool model, the documents they may train on, the teacher's
    judged eval rewrites (the target), the eval prompts of SLM-1 (`eval_pairs`) and SLM-2 (`eval_rewrites`: the
    teacher's pairs of the eval documents it rewrote), the pool's prompts and documents, and the prompt variant."""

    teacher_rows: dict[str, Path]
    train_docs: set[str]
    teacher_eval: list[dict[str, Any]]
    eval_pairs: Path
    eval_rewrites: Path
    pool_pairs: Path
    pool: set[str]
    variant: str


def round_zero(runner: Runner, cfg: RunConfig) -> Checkpoint:
    """The student before training (round 0), recorded like a trained checkpoint. A packaged student's file
    (`smollm2-135m`: its GGUF) is the stage's input, so another file reruns it."""
    student = cfg.train.student
    marker = RunLayout(runner.dir).folder("models", "round-0") / stages.MARKER
    runner.stage("train@student.round-0", stages.base_student, marker, cfg, runner.dir / "students",
                 inputs=[gguf_path(student)] if student in BASE_MODELS else [], outputs=[marker],
                 config=[student, cfg.language])
    return Checkpoint.read(marker)


class IterativeFiltering:
    """`RoundSteps` as stages of one run; `run()` drives `run_loop` and writes `rounds.json`.

    State it owns: `answers` (Table 1's "SLM round N": judged eval rewrites per round), `loss_curves` (one copy
    per round and tool model), `notes` (said first in the report) and `record` (`rounds.json`)."""

    def __init__(self, cfg: RunConfig, runner: Runner, run: RunStages, inputs: LoopInputs):
        self.cfg, self.runner, self.run_stages, self.inputs = cfg, runner, run, inputs
        self.at = RunLayout(runner.dir)
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.loss_curves: list[Path] = []
        self.notes: list[str] = []
        self.record: dict[str, Any] = {"stop_reason": JUDGE_FAILED, "regime": REGIME, "rounds": []}

    def run(self) -> dict[str, Checkpoint]:
        """The rounds until a stop rule holds; the final checkpoints by tool model (none when the judge failed its
        controls before round 1: the teacher's filter rests on it, so nothing is trained)."""
        loop, run = self.cfg.loop, self.run_stages
        checkpoints: dict[str, Checkpoint] = {}
        if failed := run.failed_controls():
            self.notes.append(f"The loop stopped before round 1: {JUDGE_FAILED} ({', '.join(failed)}).")
            console.print(f"  loop: {JUDGE_FAILED} ({', '.join(failed)}): no round trained", markup=False)
        else:
            parts = pool_parts(self.inputs.pool, per_round=loop.pool_per_round, max_rounds=loop.max_rounds,
                               seed=self.cfg.seed)
            checkpoints, self.record["rounds"], self.record["stop_reason"] = run_loop(
                self, self.inputs.teacher_eval, parts, max_rounds=loop.max_rounds, target_gap=loop.target_gap,
                baseline=loop.baseline, target_pairs_valid=loop.target_pairs_valid, min_rounds=loop.min_rounds,
                judge_failed=run.failed_controls)
            for x in self.record["rounds"]:
                console.print(f"  round {x['round']}: teacher {x['teacher_rate']:.2f}% vs SLM {x['slm_rate']:.2f}% (gap "
                              f"{x['gap']:+.2f} points), +{x['examples_added']['pairs']} pairs / +{x['examples_added']['rewrite']}"
                              f" rewrites from {x['pool_documents']} pool documents", markup=False)
            console.print(f"  loop stopped: {self.record['stop_reason']}", markup=False)
            if self.record["stop_reason"] == JUDGE_FAILED:
                self.notes.append(f"The loop stopped at round {len(self.record['rounds'])}: {JUDGE_FAILED} "
                                  f"({', '.join(run.failed_controls())}).")
        self.at.write_json("rounds.json", self.record)
        return checkpoints

    def untrained(self) -> dict[str, Checkpoint]:
        student = round_zero(self.runner, self.cfg)
        return {stage: student for stage in TOOL_MODELS}

    def train(self, r: int, extra: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Checkpoint], dict[str, dict[str, int]]]:
        checkpoints, examples = {}, {}
        for stage in TOOL_MODELS:
            checkpoints[stage], info = self.run_stages.train(f"round-{r}", stage, self.inputs.teacher_rows[stage],
                                                             self.inputs.train_docs, extra[stage])
            examples[stage] = {"teacher": info.get("teacher_rows", 0), "slm": info.get("slm_rows", 0)}
            curve = checkpoints[stage].path.parent / "loss.png"
            if curve.exists():  # one uniquely named copy per round and stage
                self.loss_curves.append(self.at.file("report", f"loss.round-{r}.{stage}.png"))
                shutil.copyfile(curve, self.loss_curves[-1])
        return checkpoints, examples

    def evaluate(self, r: int, checkpoints: dict[str, Checkpoint]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        answers = self.answer(r, checkpoints, self.inputs.eval_pairs, "eval", self.inputs.eval_rewrites)
        self.answers[f"SLM round {r}"] = read_rows(answers["judged"])
        return self.answers[f"SLM round {r}"], read_rows(answers["pairs"])

    def augment(self, r: int, checkpoints: dict[str, Checkpoint], docs: list[str]) -> dict[str, list[dict[str, Any]]]:
        part = self.at.file("heldout", f"pairs.pool.round-{r}.jsonl")
        self.runner.stage(f"augment@pool.round-{r}", stages.pool_part, self.inputs.pool_pairs, docs, part,
                          inputs=[self.inputs.pool_pairs], outputs=[part], config=sorted(docs))
        answers = self.answer(r, checkpoints, part, "pool")
        kept = self.run_stages.filter(answers["judged"], f"slm-pool.round-{r}")
        return {"pairs": [row for row in read_rows(answers["pairs"]) if row.get("status") == "ok"],
                "rewrite": read_rows(kept)}

    def answer(self, r: int, checkpoints: dict[str, Checkpoint], prompts: Path, split: str,
               rewrite_prompts: Path | None = None) -> dict[str, Path]:
        """SLM-1 proposes pairs for `prompts` and SLM-2 rewrites the teacher's pairs of `rewrite_prompts` (default
        the same), so teacher and SLM answer the very same prompts; the judge scores the rewrites."""
        cfg, run, variant = self.cfg, self.run_stages, self.inputs.variant
        folder = self.at.folder("slm", f"round-{r}")
        chunks, pairs, rewrites = (folder / f"{kind}.{split}.jsonl" for kind in ("chunks", "pairs", "rewrites"))
        rewrite_prompts = rewrite_prompts or prompts
        self.runner.stage(f"answer@{split}.round-{r}", stages.slm_answers, prompts, rewrite_prompts, chunks, pairs,
                          rewrites, cfg, run.slm(checkpoints["pairs"]), run.slm(checkpoints["rewrite"]), variant,
                          overwrite=self.runner.overwrite,
                          inputs=[prompts, rewrite_prompts, *(c.marker for c in checkpoints.values())],
                          outputs=[pairs, rewrites],
                          config=[cfg.teacher.pairs.model_dump(), cfg.teacher.rewrite.model_dump(), variant])
        return {"judged": run.judge(rewrites, folder / f"judged.{split}.jsonl", f"judge-slm@{split}.round-{r}"),
                "pairs": pairs}
