"""`mga run`: the MGA method over one run directory, top to bottom.

    chunk -> label-pairs -> check-pairs -> split -> label-rewrites -> judge -> filter
      -> rounds of [train -> answer -> judge-slm -> augment] that accumulate SFT data, until the SLM is within
         `loop.target_gap` points of the teacher (Rate(>=3) on the eval documents) and SLM-1 writes valid pairs,
         or `loop.max_rounds`, or the pool is used up, or a round adds nothing (`iterative_filtering.py`)
      -> quantize -> judge-quantized -> report

Every judged stage also judges the judge's controls (`mga.judge.controls`). While the judge fails them, the
loop never stops on the gap: it stops with "judge failed its controls", nothing more is trained or
quantized, the report says so first and the run ends with an error.

Every stage is a plain function of `stages.py` (files in, files out) run through the `Runner`, which records
it in `manifest.json`; this module only says which stage reads which file, and hands the loop its inputs.
Documents are split once into train / eval / pool (see `mga.distill.train.split`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.config import default_corpus_path
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.pipeline import stages
from mga.distill.pipeline.iterative_filtering import JUDGE_FAILED, IterativeFiltering, LoopInputs
from mga.distill.pipeline.layout import RunLayout
from mga.distill.pipeline.manifest import fingerprint_paths
from mga.distill.pipeline.recipe import RunConfig, dump_recipe
from mga.distill.pipeline.report import report
from mga.distill.pipeline.runner import Instances, Runner, timed
from mga.distill.pipeline.stages import Checkpoint
from mga.distill.train.launch import preflight
from mga.distill.train.split import only_docs, read_split, split_documents, write_parts
from mga.judge.controls import control_verdict, failed_stages
from mga.quantize.gguf import local_gguf
from mga.judge.pairs_check import check_pairs_file
from mga.judge.reference import (
    default_reference_path,
    reference_chunk_rows,
    reference_files,
    reference_pairs_rows,
)

TABLE2_REGIME = ("Table 2 compares SLM-2s trained under one regime: once, on their own variant's kept teacher rewrites "
                 "of the train documents, with the same student and training settings and no augmentation rounds "
                 "(\"SLM · {main}\" is round 1's SLM-2); every line is judged on the eval documents' items.")


def run_pipeline(cfg: RunConfig, *, from_stage: str | None = None, until: str | None = None,
                 overwrite: bool = False) -> Path:
    """Run (or resume) the recipe `cfg`; returns the run directory. `overwrite`: a labeling stage that runs
    redoes an output holding another input's rows instead of refusing it (the request cache still answers
    what it already has)."""
    preflight(cfg.train)  # a training plan known to fail is refused before any stage spends anything
    runner = Runner(cfg.out_dir, cfg.teacher, from_stage=from_stage, until=until, overwrite=overwrite)
    (runner.dir / "recipe.yaml").write_text(dump_recipe(cfg), encoding="utf-8")
    return timed(runner, f"run {cfg.name}", lambda: Pipeline(cfg, runner).run())


class Pipeline:
    """The stage list of one run: each method below chains a few stages and returns the paths it wrote."""

    def __init__(self, cfg: RunConfig, runner: Runner):
        self.cfg, self.runner, self.at = cfg, runner, RunLayout(runner.dir)
        self.teacher = runner.generator(cfg.teacher)
        self.judge_model = runner.generator(cfg.judge.endpoint or cfg.teacher) if cfg.judge.backend == "llm" else None
        self.notes: list[str] = []  # said in the report
        self.controls: dict[str, dict[str, Any] | None] = {}  # judged stage -> the judge's control verdict

    def run(self) -> None:
        cfg, at = self.cfg, self.at
        variants, main = list(cfg.label.variants), cfg.label.variants[0]
        kept_pairs = self.teacher_pairs()
        self.split(kept_pairs)
        eval_pairs, pool_pairs = at.file("heldout", "pairs.eval.jsonl"), at.file("heldout", "pairs.pool.jsonl")
        self.runner.stage("split@prompts", write_parts, kept_pairs, at.split, {"eval": eval_pairs, "pool": pool_pairs},
                          inputs=[kept_pairs, at.split], outputs=[eval_pairs, pool_pairs])
        judged = self.runner.each(variants, lambda v: self.judge(  # `--until` honoured in every variant
            self.teacher_rewrites(kept_pairs, v), at.file("judged", f"teacher.{v}.jsonl"), f"judge@teacher.{v}"))
        kept_rewrites = self.filter(judged[main], "teacher")
        parts = read_split(at.split)
        teacher_eval = only_docs(read_rows(judged[main]), parts["eval"])
        eval_rewrites = at.file("heldout", "pairs.eval.rewrite.jsonl")  # stage-2 eval items: the teacher's
        self.runner.stage("filter@eval-rewrites", stages.rewrite_prompts, eval_pairs, judged[main], eval_rewrites,
                          inputs=[eval_pairs, judged[main]], outputs=[eval_rewrites])
        teacher_name = "teacher (reference labels)" if cfg.label.reference else f"teacher ({cfg.teacher.model})"
        loop = IterativeFiltering(cfg, self.runner, self, LoopInputs(
            teacher_rows={"pairs": kept_pairs, "rewrite": kept_rewrites}, train_docs=parts["train"],
            teacher_eval=teacher_eval, eval_pairs=eval_pairs, eval_rewrites=eval_rewrites, pool_pairs=pool_pairs,
            pool=parts["pool"], variant=main))
        each, table2, quantized, checkpoints = Instances(), {}, [], {}
        with each:  # the loop, then each variant's SLM (the paper's Table 2), trained and judged alike
            checkpoints = loop.run()
        self.notes[:0] = loop.notes
        models: dict[str, list[dict[str, Any]]] = {teacher_name: teacher_eval, **loop.answers}
        if not self.failed_controls():
            for variant in variants[1:]:
                with each:
                    table2.update(self.variant_slm(variant, judged[variant], parts["train"], eval_rewrites))
        each.end()
        if not self.failed_controls():
            if len(variants) > 1:
                table2 = {f"SLM · {main}": models["SLM round 1"], **table2}
                self.notes.append(TABLE2_REGIME.format(main=main))
            quantized = self.quantize(checkpoints, eval_rewrites, main, models)
        report(self.runner, cfg, models, judged, table2, loop.loss_curves, loop.record, quantized, self.notes, parts["eval"],
               self.reference(), self.controls, self.analyze_loss() if cfg.analyze else None)
        if failed := self.failed_controls():
            raise MgaError(f"{JUDGE_FAILED} in {', '.join(failed)}: its scores do not tell a faithful rewrite from an "
                           f"unrelated text, so no comparison was made (see {self.runner.dir / 'report' / 'report.md'}); "
                           "fix the judge (model, prompt, chat template) and rerun, or set judge.controls=0 to skip the check")

    # -- teacher labels -----------------------------------------------------------------------------------

    def reference(self) -> Path | None:
        ref = self.cfg.label.reference
        if ref is None:
            return None
        return Path(default_reference_path(self.cfg.language)) if str(ref) == "bundled" else Path(ref)

    def teacher_pairs(self) -> Path:
        """Stage-1 labels for every chunk (teacher or reference), then the rule check; the kept pairs."""
        cfg, at, stage = self.cfg, self.at, self.runner.stage
        chunks, pairs = at.file("corpus", "chunks.jsonl"), at.file("labels", "pairs.jsonl")
        kept, rejected = at.file("labels", "pairs.kept.jsonl"), at.file("labels", "pairs.rejected.jsonl")
        reference = self.reference()
        if reference:
            stage("chunk", stages.copy_rows, reference_chunk_rows(reference), chunks, inputs=reference_files(reference),
                  outputs=[chunks], config="reference")
            stage("label-pairs", stages.copy_rows, reference_pairs_rows(reference), pairs, inputs=reference_files(reference),
                  outputs=[pairs], config="reference")
        else:
            corpus = Path(cfg.corpus.path) if cfg.corpus.path else default_corpus_path(cfg.language)
            stage("chunk", stages.chunk, corpus, chunks, cfg,
                  inputs=fingerprint_paths(corpus, at.file("corpus", "source.json")), outputs=[chunks],
                  config=cfg.corpus.model_dump(mode="json"))
            stage("label-pairs", stages.pairs, chunks, pairs, cfg, self.teacher,
                  max_validation_attempts=cfg.label.max_validation_attempts, overwrite=self.runner.overwrite,
                  inputs=[chunks], outputs=[pairs],
                  config=[cfg.teacher.model, cfg.teacher.pairs.model_dump(), cfg.label.num_pairs, cfg.language])
        stage("check-pairs", check_pairs_file, pairs, kept, rejected, cfg.label.num_pairs, inputs=[pairs],
              outputs=[kept, rejected], config=cfg.label.num_pairs)
        return kept

    def split(self, kept_pairs: Path) -> None:
        loop = self.cfg.loop
        self.runner.stage("split", split_documents, kept_pairs, self.at.split, heldout_fraction=loop.heldout_fraction,
                          pool_fraction=loop.pool_fraction, seed=self.cfg.seed, inputs=[kept_pairs],
                          outputs=[self.at.split], config=[self.cfg.seed, loop.heldout_fraction, loop.pool_fraction])

    def teacher_rewrites(self, kept_pairs: Path, variant: str) -> Path:
        cfg, reference = self.cfg, self.reference()
        out, subset = self.at.file("labels", f"rewrites.{variant}.jsonl"), self.at.file("labels", "pairs.teacher-docs.jsonl")
        self.runner.stage(f"label-rewrites@{variant}", stages.teacher_rewrites, kept_pairs, self.at.split, subset, out,
                          cfg, self.teacher, variant, reference, overwrite=self.runner.overwrite,
                          inputs=[kept_pairs, self.at.split] + ([reference] if reference else []), outputs=[out],
                          config=[cfg.teacher.model, cfg.teacher.rewrite.model_dump(), variant, cfg.language])
        return out

    def judge(self, rows: Path, out: Path, name: str) -> Path:
        cfg = self.cfg
        judge_name = (cfg.judge.endpoint or cfg.teacher).model if cfg.judge.backend == "llm" else "heuristic"
        chunks = self.at.file("corpus", "chunks.jsonl")  # the controls' other documents come from the corpus
        self.runner.stage(name, stages.judge, rows, out, cfg, self.judge_model, chunks, inputs=[rows, chunks], outputs=[out],
                          config=[cfg.judge.model_dump(mode="json"), cfg.teacher.judge.model_dump(), cfg.language, judge_name,
                                  cfg.seed])
        self.controls[name] = control_verdict(read_rows(out), cfg.judge)
        return out

    def filter(self, judged: Path, name: str) -> Path:
        kept, rejected = self.at.file("filtered", f"{name}.kept.jsonl"), self.at.file("filtered", f"{name}.rejected.jsonl")
        self.runner.stage(f"filter@{name}", stages.filter_, judged, kept, rejected, self.cfg, inputs=[judged],
                          outputs=[kept, rejected], config=self.cfg.filter.model_dump(mode="json"))
        return kept

    def failed_controls(self) -> list[str]:
        return failed_stages(self.controls)

    # -- trained models -----------------------------------------------------------------------------------

    def train(self, tag: str, stage: str, teacher_rows: Path, train_docs: set[str],
              extra: list[dict[str, Any]]) -> tuple[Checkpoint, dict[str, Any]]:
        """Train one tool model (`tag`: round-N, or variant-V for a prompt variant's SLM-2); (its checkpoint,
        what its stage recorded)."""
        from mga.distill.core.schema import chunk_key, rewrite_key

        key = chunk_key if stage == "pairs" else rewrite_key
        out_dir = self.at.folder("models", tag, stage)
        marker = out_dir / stages.MARKER
        info = self.runner.stage(f"train@{stage}.{tag}", stages.train, teacher_rows, extra, train_docs,
                          self.at.file("sft", tag, f"{stage}.rows.jsonl"), out_dir, marker, self.cfg, stage,
                          self.at.root / "students", inputs=[teacher_rows], outputs=[marker],
                          config=[self.cfg.train.model_dump(mode="json"), self.cfg.language, [key(x) for x in extra]])
        return Checkpoint.read(marker), info

    def slm(self, checkpoint: Checkpoint, backend: str | None = None) -> Any:
        """The generator of a tool model on `backend` (default `loop.backend`); with llamacpp, built from an f16
        GGUF export of the checkpoint when the stage runs (a GGUF output folder is used as it is)."""
        backend = backend or self.cfg.loop.backend
        endpoint = self.cfg.teacher.model_copy(update={"backend": backend, "model": str(checkpoint.path)})
        factory = self.runner.generator(endpoint)
        if backend != "llamacpp":
            return factory

        def build() -> Any:
            factory.endpoint = endpoint.model_copy(update={"model": str(local_gguf(checkpoint.path))})
            return factory()
        return build

    # -- variants and quantized models ---------------------------------------------------------------------

    def variant_slm(self, variant: str, judged: Path, train_docs: set[str], eval_pairs: Path) -> dict[str, list]:
        """Train an SLM-2 on the kept teacher rewrites of one prompt variant; judge its eval answers."""
        kept = self.filter(judged, f"teacher.{variant}")
        if not only_docs(read_rows(kept), train_docs):
            self.notes.append(f"No {variant} rewrite passed the filters: no SLM was trained for that variant.")
            return {}
        tag = f"variant-{variant}"
        checkpoint, _ = self.train(tag, "rewrite", kept, train_docs, [])
        return {f"SLM · {variant}": self.judged_eval_rewrites(checkpoint, eval_pairs, variant, folder=tag,
                                                             answer_stage=f"answer@eval.{tag}", judge_stage=f"judge-slm@eval.{tag}")}

    def judged_eval_rewrites(self, checkpoint: Checkpoint, eval_pairs: Path, variant: str, *, folder: str, answer_stage: str,
                             judge_stage: str, backend: str | None = None) -> list[dict[str, Any]]:
        """An SLM-2 checkpoint rewrites the eval prompts (the teacher's pairs); the judge scores the rewrites."""
        out = self.at.file("slm", folder, "rewrites.eval.jsonl")
        self.runner.stage(answer_stage, stages.rewrites, eval_pairs, out, self.cfg, self.slm(checkpoint, backend), variant,
                          overwrite=self.runner.overwrite, inputs=[eval_pairs, checkpoint.marker], outputs=[out],
                          config=[self.cfg.teacher.rewrite.model_dump(), variant])
        return read_rows(self.judge(out, out.with_name("judged.eval.jsonl"), judge_stage))

    def quantize(self, checkpoints: dict[str, Checkpoint], eval_pairs: Path, variant: str, models: dict) -> list[dict]:
        heldout = {stage: self.heldout_rows(stage) for stage in checkpoints} if self.cfg.quantize.schemes else {}
        return list(self.runner.each(self.cfg.quantize.schemes,  # `--until quantize` exports every scheme
                                     lambda s: self.quantized(checkpoints, s, eval_pairs, variant, models, heldout)).values())

    def quantized(self, checkpoints: dict[str, Checkpoint], scheme: str, eval_pairs: Path, variant: str, models: dict,
                  heldout: dict[str, Path]) -> dict:
        """One scheme's exports of the final tool models; the quantized SLM-2's eval answers judged."""
        cfg, outs = self.cfg, {}
        corpus = Path(cfg.corpus.path) if cfg.corpus.path else default_corpus_path(cfg.language)
        for stage, checkpoint in checkpoints.items():
            out_dir = self.at.folder("quantized", f"{stage}-{scheme}")
            self.runner.stage(f"quantize@{stage}.{scheme}", stages.quantize, checkpoint.path, out_dir, scheme, cfg, corpus,
                              heldout[stage], inputs=[checkpoint.marker, heldout[stage]],
                              outputs=[out_dir / "mga_quantize.json"],
                              config=[cfg.quantize.model_dump(mode="json"), scheme])
            outs[stage] = out_dir
        exported = Checkpoint(outs["rewrite"], outs["rewrite"] / "mga_quantize.json")
        # each format on the engine that serves it: GGUF in llama.cpp, GPTQ/W8A8 in transformers (or vLLM)
        backend = "llamacpp" if scheme.startswith("gguf-") else "vllm" if cfg.loop.backend == "vllm" else "transformers"
        models[f"SLM final + {scheme}"] = self.judged_eval_rewrites(
            exported, eval_pairs, variant, folder=f"quantized-{scheme}", backend=backend,
            answer_stage=f"judge-quantized@answer.{scheme}", judge_stage=f"judge-quantized@{scheme}")
        return {"scheme": scheme, **{stage: str(path) for stage, path in outs.items()}}

    def heldout_rows(self, stage: str) -> Path:
        """The teacher's kept labels of the eval documents as SFT rows: never trained on by any round."""
        at = self.at
        source = at.file("labels", "pairs.kept.jsonl") if stage == "pairs" else at.file("filtered", "teacher.kept.jsonl")
        out = at.file("heldout", f"sft.{stage}.eval.jsonl")
        self.runner.stage(f"quantize@heldout.{stage}", stages.heldout_sft_rows, source, read_split(at.split)["eval"],
                          stage, out, self.cfg, inputs=[source, at.split], outputs=[out])
        return out

    def analyze_loss(self) -> Path:
        """`analyze:`: the token-level loss analysis of two models; its summary feeds the report."""
        out_dir, a = self.at.folder("analysis", "loss"), self.cfg.analyze
        inputs = [p for p in (Path(a.real_model) / "model.safetensors", Path(a.synthetic_model) / "model.safetensors",
                              Path(a.texts)) if p.exists()]
        self.runner.stage("analyze-loss", stages.analyze_loss, out_dir, self.cfg, inputs=inputs,
                          outputs=[out_dir / "summary.json"], config=a.model_dump(mode="json"))
        return out_dir / "summary.json"
