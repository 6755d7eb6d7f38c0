"""The run's report stage: Table 1 of every judged model, Table 2 of the prompt variants, the rounds, the
quantized-vs-full comparisons, loss curves and the embedding map, with notes that say what the numbers are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mga.distill.core.io import read_rows
from mga.distill.core.schema import is_control, score_of
from mga.distill.pipeline.recipe import RunConfig
from mga.distill.pipeline.runner import Runner
from mga.distill.pipeline.iterative_filtering import rounds_markdown
from mga.distill.train.base_model import BASE_MODELS
from mga.distill.train.split import only_docs
from mga.judge.embed_map import embedding_map
from mga.judge.health import reference_key
from mga.judge.reference import reference_judged_rows
from mga.judge.report import loss_analysis_section, write_report
from mga.quantize.evaluate import compare_section, formats_section


def notes_for(cfg: RunConfig, *, trained: bool) -> list[str]:
    """What the numbers are; `trained`: whether any student was trained (a run may stop before round 1)."""
    notes = []
    if cfg.judge.backend == "heuristic":
        notes.append("Scores come from the offline heuristic judge, not an LLM: they show the pipeline works, not model quality.")
    if cfg.train.student.startswith("tiny:") and trained:
        notes.append(f"The student is a tiny randomly initialised model ({cfg.train.student}) trained for minutes on CPU: "
                     "expect it to fall far short of the teacher.")
    if cfg.train.student in BASE_MODELS:
        name = BASE_MODELS[cfg.train.student].name
        notes.append(f"The student is {name}, a real pretrained model of 135M parameters (the paper's tool models have "
                     "3.3B) trained on CPU on a few dozen documents; round 0 is the same model untrained, on the same "
                     "items. Read the change between rounds within its intervals, not as the quality of a production "
                     "tool model.")
    if cfg.label.reference:
        notes.append("Teacher labels are the bundled reference labels (written for this toolkit), not a live teacher.")
    return notes


def judge_label(cfg: RunConfig) -> str:
    if cfg.judge.backend == "heuristic":
        return "heuristic judge (MiniLM cosine + keyword coverage; NOT an LLM judge)"
    return f"LLM judge ({(cfg.judge.endpoint or cfg.teacher).model}, Limited Consistency)"


def write_run_report(out_dir: Path, cfg: RunConfig, models: dict[str, list[dict[str, Any]]], judged_teacher: dict[str, Path],
                     table2: dict[str, list[dict[str, Any]]], loss_curves: list[Path], rounds: dict[str, Any],
                     quantized: list[dict[str, Any]], notes: list[str], eval_docs: set[str],
                     reference: Path | None, judge_controls: dict[str, dict[str, Any] | None],
                     loss_analysis: Path | None = None) -> dict[str, Any]:
    """The report; its info (shown in the end-of-run summary) carries the flags of failing models."""
    sections = [("Rounds", rounds_markdown(rounds["rounds"], rounds["stop_reason"]) + "\n\n" + rounds["regime"])]
    for q in quantized:
        for stage in ("pairs", "rewrite"):
            compare = Path(q[stage]) / "compare.json"
            if compare.exists():
                sections.append((f"Quantized vs full: {stage} model, {q['scheme']}", compare_section(compare)))
    for stage in ("pairs", "rewrite"):
        compares = [Path(q[stage]) / "compare.json" for q in quantized if (Path(q[stage]) / "compare.json").exists()]
        if compares:
            sections.append((f"Quantized formats: {stage} model", formats_section(compares)))
    images = list(loss_curves)
    if loss_analysis is not None:
        section, charts = loss_analysis_section(loss_analysis)
        sections.append(section)
        images += charts
    if cfg.report.embed:
        rows = [row for path in judged_teacher.values() for row in read_rows(path) if not is_control(row)]
        images.append(embedding_map(rows, out_dir / "embedding_map.png"))
    variants = None
    if len(judged_teacher) > 1:  # the teacher's lines: its rows of the eval documents, as every SLM's
        variants = {f"teacher · {v}": only_docs(read_rows(p), eval_docs) for v, p in judged_teacher.items()} | table2
    scores = {reference_key(row): score_of(row) for row in reference_judged_rows(reference)} if reference else None
    write_report(models, out_dir, judge_label=judge_label(cfg), reference_model=next(iter(models)),
                 notes=[*notes, *notes_for(cfg, trained=any(r.get("round", 1) > 0 for r in rounds["rounds"]))], images=images, sections=sections, target_gap=cfg.loop.target_gap,
                 max_failed_share=cfg.report.max_failed_share, reference_scores=scores, judge_controls=judge_controls,
                 filter_cfg=cfg.filter, **({"variants": variants} if variants else {}))
    flags = json.loads((out_dir / "report.json").read_text())["flags"]
    return {"report": str(out_dir / "report.html"), "flags": flags}


def report(runner: Runner, cfg: RunConfig, models, judged_teacher, table2, loss_curves, rounds, quantized, notes,
           eval_docs: set[str], reference: Path | None, judge_controls, loss_analysis: Path | None = None) -> None:
    out_dir = runner.dir / "report"
    judged_scores = {name: [score_of(r) for r in rows] for name, rows in {**models, **table2}.items()}
    runner.stage("report", write_run_report, out_dir, cfg, models, judged_teacher, table2, loss_curves, rounds, quantized,
                 notes, eval_docs, reference, judge_controls, loss_analysis,
                 inputs=[runner.dir / "rounds.json", *judged_teacher.values(), *([loss_analysis] if loss_analysis else [])],
                 outputs=[out_dir / "report.html"],
                 config=[cfg.report.model_dump(mode="json"), cfg.filter.model_dump(mode="json"), cfg.loop.target_gap, [q["scheme"] for q in quantized], judged_scores,
                         judge_controls, notes])
