"""The stages of `mga run` as plain functions: input paths and config in, output files written, a small
info dict (rows, rates) out for the summary. Each one calls its step's own module; `pipeline.py` chains
them and the runner decides whether they run. Generators come as factories, so a stage that is skipped
loads no model and sends no request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import iter_rows, read_rows, write_rows
from mga.distill.core.schema import is_control
from mga.distill.core.weights import stored_digest
from mga.distill.label.chunk import chunk_corpus
from mga.distill.label.labeling import label_pairs, label_rewrites
from mga.distill.pipeline.recipe import RunConfig
from mga.distill.pipeline.runner import GeneratorFactory
from mga.distill.train.launch import train as train_tool_model
from mga.distill.train.sft_data import build_sft_datasets
from mga.distill.train.split import only_docs, read_split
from mga.distill.train.tiny_model import resolve_student
from mga.judge.controls import control_verdict
from mga.judge.filters import filter_file
from mga.judge.judging import judge_file
from mga.judge.reference import reference_rewrite_rows
from mga.judge.scores import rate_ge3

MARKER = "mga_checkpoint.txt"  # what a training stage writes beside its checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """A model of the run: its folder, and the marker that stands for it among later stages' inputs. The marker
    holds the weights' digest (`stored_digest`), so a stage that uses the model reruns exactly when its weights
    change: a retraining that writes the same weights changes nothing downstream, a changed student does."""

    path: Path
    marker: Path

    @classmethod
    def read(cls, marker: Path) -> Checkpoint:
        return cls(Path(marker.read_text(encoding="utf-8").splitlines()[0]), marker)


def mark(checkpoint: Path, marker: Path) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{checkpoint}\n{stored_digest(checkpoint)}\n", encoding="utf-8")


def copy_rows(rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    write_rows(out, rows)
    return {"rows_out": len(rows)}


def chunk(corpus: Path, out: Path, cfg: RunConfig) -> dict[str, Any]:
    chunk_corpus(corpus, out, cfg.corpus, seed=cfg.seed, language=cfg.language)  # a file, folder, glob or saved dataset
    return {"rows_out": sum(1 for _ in iter_rows(out))}


def pairs(chunks: Path, out: Path, cfg: RunConfig, model: GeneratorFactory, *, max_validation_attempts: int,
          overwrite: bool = False) -> dict[str, Any]:
    """Stage-1 labels: 5 (genre, audience) pairs per chunk, from the teacher or an SLM-1."""
    label_pairs(chunks, out, model(), language=cfg.language, num_pairs=cfg.label.num_pairs, params=cfg.teacher.pairs,
                max_validation_attempts=max_validation_attempts, overwrite=overwrite)
    rows = read_rows(out)
    return {"rows_in": len(read_rows(chunks)), "rows_out": len(rows),
            "pairs_valid": sum(row.get("status") == "ok" for row in rows), "pairs_total": len(rows)}


def rewrites(prompts: Path, out: Path, cfg: RunConfig, model: GeneratorFactory, variant: str, *,
             overwrite: bool = False) -> dict[str, Any]:
    """Stage-2 labels: one rewrite per (document, pair) of `prompts`, from the teacher or an SLM-2."""
    label_rewrites(prompts, out, model(), language=cfg.language, variant=variant, params=cfg.teacher.rewrite,
                   max_attempts=cfg.label.max_validation_attempts, overwrite=overwrite)
    return {"rows_out": len(read_rows(out))}


def teacher_rewrites(kept_pairs: Path, split: Path, subset: Path, out: Path, cfg: RunConfig, teacher: GeneratorFactory,
                     variant: str, reference: Path | None, *, overwrite: bool = False) -> dict[str, Any]:
    """Teacher rewrites for train + eval documents (pool documents only need prompts)."""
    parts = read_split(split)
    docs = parts["train"] | parts["eval"]
    if reference is not None:
        if variant != "base":
            raise MgaError(f"reference labels hold Base rewrites only; variant '{variant}' needs a teacher")
        return copy_rows(only_docs(reference_rewrite_rows(reference, variant=variant), docs), out)
    write_rows(subset, only_docs(read_rows(kept_pairs), docs))
    return rewrites(subset, out, cfg, teacher, variant, overwrite=overwrite)


def judge(rows: Path, out: Path, cfg: RunConfig, judge_model: GeneratorFactory | None, donors: Path) -> dict[str, Any]:
    """The judge's scores of `rows`, with its controls (other documents drawn from the corpus chunks `donors`)."""
    generator = judge_model() if judge_model is not None else None
    judge_file(rows, out, cfg.judge, language=cfg.language, generator=generator, params=cfg.teacher.judge,
               seed=cfg.seed, donors=donors)
    judged = read_rows(out)
    verdict, real = control_verdict(judged, cfg.judge), sum(not is_control(row) for row in judged)
    return {"rows_in": real, "rows_out": real, "rate_ge3": round(rate_ge3(judged), 2),
            "controls": "off" if verdict is None else "passed" if verdict["passed"] else "FAILED"}


def filter_(judged: Path, kept: Path, rejected: Path, cfg: RunConfig) -> dict[str, Any]:
    stats = filter_file(judged, kept, rejected, cfg.filter, language=cfg.language)
    return {"rows_in": len(read_rows(judged)), "rows_out": len(read_rows(kept)), "rejected": stats}


def train(teacher_rows: Path, extra: list[dict[str, Any]], train_docs: set[str], rows_out: Path, out_dir: Path,
          marker: Path, cfg: RunConfig, stage: str, students: Path) -> dict[str, Any]:
    """SFT of one tool model on the teacher's kept rows of the train documents plus `extra` (good SLM answers)."""
    from mga.distill.core.schema import chunk_key, rewrite_key

    key = chunk_key if stage == "pairs" else rewrite_key
    rows = {key(row): row for row in only_docs(read_rows(teacher_rows), train_docs)}
    teacher_count = len(rows)
    rows.update({key(row): row for row in extra})
    write_rows(rows_out, list(rows.values()))
    train_file, eval_file = build_sft_datasets(rows_out, stage, out_dir / "data", language=cfg.language,
                                               eval_fraction=cfg.train.eval_fraction, seed=cfg.seed,
                                               num_pairs=cfg.label.num_pairs)
    checkpoint = train_tool_model(train_file, eval_file, out_dir, cfg.train,
                                  student=resolve_student(cfg.train.student, students, cfg.language), stage=stage)
    mark(Path(checkpoint), marker)
    return {"rows_in": len(rows), "teacher_rows": teacher_count, "slm_rows": len(rows) - teacher_count,
            "checkpoint": str(checkpoint)}


def rewrite_prompts(prompts: Path, teacher_rows: Path, out: Path) -> dict[str, Any]:
    """Stage-2 eval prompts: the held-out pairs of the documents the teacher rewrote. With bundled labels only
    some documents carry rewrites; SLM-2 answers exactly the teacher's items, so Table 1 compares equal sets."""
    docs = {row["meta"]["docid"] for row in iter_rows(teacher_rows) if not is_control(row)}
    return copy_rows(only_docs(read_rows(prompts), docs), out)


def base_student(marker: Path, cfg: RunConfig, students: Path) -> dict[str, Any]:
    """The untrained student as round 0's checkpoint (built or converted once for `tiny:` and named models)."""
    checkpoint = Path(resolve_student(cfg.train.student, students, cfg.language))
    if not (checkpoint / "config.json").exists():
        raise MgaError(f"train.student {cfg.train.student}: round 0 needs a local checkpoint (config.json); "
                       "set loop.baseline=false for a hub id")
    mark(checkpoint, marker)
    return {"checkpoint": str(checkpoint)}


def pool_part(pool_pairs: Path, docs: list[str], out: Path) -> dict[str, Any]:
    """The prompts of one round's part of the pool: documents no earlier round answered."""
    return copy_rows(only_docs(read_rows(pool_pairs), set(docs)), out)


def heldout_sft_rows(rows: Path, eval_docs: set[str], stage: str, out: Path, cfg: RunConfig) -> dict[str, Any]:
    """SFT-shaped rows (chat messages with the teacher's answer) of the eval documents, which no round trains
    on: what a quantized export is compared with its full model on (perplexity, greedy agreement, task rates)."""
    from mga.distill.train.sft_data import sft_example, unusable_reason

    kept = [row for row in only_docs(read_rows(rows), eval_docs) if unusable_reason(row, stage) is None]
    return copy_rows([sft_example(row, stage, cfg.language, cfg.label.num_pairs) for row in kept], out)


def quantize(checkpoint: Path, out_dir: Path, scheme: str, cfg: RunConfig, corpus: Path,
             heldout: Path | None = None) -> dict[str, Any]:
    """A quantized export of one tool model, calibrated on its SFT rows and the corpus, compared with it on the
    task on `heldout` rows (GGUF exports are verified in llama.cpp at export on them instead, on as many rows
    and tokens as the task checks)."""
    from mga.judge.pairs_check import parse_pairs
    from mga.quantize.calibration import build_calibration
    from mga.quantize.export import quantize_checkpoint
    from mga.quantize.evaluate import evaluate_export
    from transformers import AutoTokenizer

    q = cfg.quantize
    sft_train, sft_eval = checkpoint.parent / "data" / "train.jsonl", checkpoint.parent / "data" / "eval.jsonl"
    texts, record = build_calibration(
        AutoTokenizer.from_pretrained(checkpoint), sft_rows=sft_train if sft_train.exists() else None,
        corpus_path=corpus, num_samples=q.calibration_samples, max_length=q.calibration_max_length,
        corpus_fraction=q.corpus_fraction, seed=cfg.seed)
    quantize_checkpoint(checkpoint, out_dir, scheme, group_size=q.group_size, desc_act=q.desc_act, calibration=texts,
                        calibration_record=record, num_samples=q.calibration_samples,
                        max_length=q.calibration_max_length, seed=cfg.seed, heldout=heldout,
                        verify_rows=q.task_rows, verify_tokens=q.task_max_new_tokens)
    info: dict[str, Any] = {"checkpoint": str(out_dir)}
    if q.eval and not scheme.startswith("gguf-") and (heldout or sft_eval.exists() or sft_train.exists()):
        info["compare"] = evaluate_export(checkpoint, out_dir, heldout=heldout, pairs_check=lambda text: parse_pairs(text)[1],
                                          max_rows=q.task_rows, max_new_tokens=q.task_max_new_tokens)
    return info


def slm_answers(prompts: Path, rewrite_prompts: Path, chunks: Path, pairs_out: Path, rewrites_out: Path, cfg: RunConfig,
                pairs_model: GeneratorFactory, rewrite_model: GeneratorFactory, variant: str, *,
                overwrite: bool = False) -> dict[str, Any]:
    """The SLMs answer held-out prompts: SLM-1 proposes pairs for each document of `prompts` (one attempt, as
    it would in bulk), SLM-2 rewrites the teacher's pairs of `rewrite_prompts`, so teacher and SLM answer the
    very same prompts."""
    write_rows(chunks, [{"meta": row["meta"]} for row in read_rows(prompts)])
    info = pairs(chunks, pairs_out, cfg, pairs_model, max_validation_attempts=1, overwrite=overwrite)
    return {**info, **rewrites(rewrite_prompts, rewrites_out, cfg, rewrite_model, variant, overwrite=overwrite)}


def analyze_loss(out_dir: Path, cfg: RunConfig) -> dict[str, Any]:
    """The `analyze:` section: token-level loss analysis of two models (paper Figure 7) into `out_dir`."""
    from mga.distill.analyze import analyze_loss as run_analysis

    a = cfg.analyze
    summary = run_analysis(a.real_model, a.synthetic_model, a.texts, out_dir, k=a.k, max_length=a.max_length)
    return {"rows_out": summary["documents"], "anomaly_share": summary["anomaly_share"]}
