"""The loop's steps (`mga.distill.train.loop.RoundSteps`) as stages of a run: train, answer the eval prompts,
answer the round's part of the pool. The loop itself (accumulation, stop rules) lives in the train step."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mga.distill.core.io import read_rows
from mga.distill.pipeline import stages
from mga.distill.train.loop import STAGES

REGIME = ("Table 1's \"SLM round N\" is trained on the teacher's kept examples of the train documents plus the good "
          "SLM answers to the pool documents of rounds 1..N-1 (each pool document answered once).")
TABLE2_REGIME = ("Table 2 compares SLM-2s trained under one regime: once, on their own variant's kept teacher rewrites "
                 "of the train documents, with the same student and training settings and no augmentation rounds "
                 "(\"SLM · {main}\" is round 1's SLM-2); every line is judged on the eval documents' items.")


class PipelineRounds:
    """`RoundSteps` over a `Pipeline`: each step is a few stages recorded in the manifest."""

    def __init__(self, pipeline: Any, kept_pairs: Path, kept_rewrites: Path, train_docs: set[str], eval_pairs: Path,
                 eval_rewrites: Path, pool_pairs: Path, variant: str, models: dict[str, list[dict[str, Any]]]):
        self.p, self.teacher_rows = pipeline, {"pairs": kept_pairs, "rewrite": kept_rewrites}
        self.train_docs, self.eval_pairs, self.pool_pairs = train_docs, eval_pairs, pool_pairs
        self.eval_rewrites = eval_rewrites
        self.variant, self.models = variant, models
        self.loss_curves: list[Path] = []

    def untrained(self) -> dict[str, Path]:
        student = self.p.untrained_student()
        return {stage: student for stage in STAGES}

    def train(self, r: int, extra: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
        checkpoints, examples = {}, {}
        for stage in STAGES:
            checkpoints[stage] = self.p.train(f"round-{r}", stage, self.teacher_rows[stage], self.train_docs, extra[stage])
            info = self.p.train_info[checkpoints[stage]]
            examples[stage] = {"teacher": info.get("teacher_rows", 0), "slm": info.get("slm_rows", 0)}
            if (checkpoints[stage].parent / "loss.png").exists():  # one uniquely named copy per round and stage
                self.loss_curves.append(self.p.at.file("report", f"loss.round-{r}.{stage}.png"))
                shutil.copyfile(checkpoints[stage].parent / "loss.png", self.loss_curves[-1])
        return checkpoints, examples

    def evaluate(self, r: int, checkpoints: dict[str, Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        answers = self.p.answer(r, checkpoints, self.eval_pairs, "eval", self.variant, self.eval_rewrites)
        self.models[f"SLM round {r}"] = read_rows(answers["judged"])
        return self.models[f"SLM round {r}"], read_rows(answers["pairs"])

    def augment(self, r: int, checkpoints: dict[str, Path], docs: list[str]) -> dict[str, list[dict[str, Any]]]:
        part = self.p.at.file("heldout", f"pairs.pool.round-{r}.jsonl")
        self.p.runner.stage(f"augment@pool.round-{r}", stages.pool_part, self.pool_pairs, docs, part,
                            inputs=[self.pool_pairs], outputs=[part], config=sorted(docs))
        answers = self.p.answer(r, checkpoints, part, "pool", self.variant)
        kept = self.p.filter(answers["judged"], f"slm-pool.round-{r}")
        return {"pairs": [row for row in read_rows(answers["pairs"]) if row.get("status") == "ok"],
                "rewrite": read_rows(kept)}
