"""`mga run`: chain the stages of the MGA method over one run directory.

    chunk -> label-pairs -> check-pairs -> split -> label-rewrites -> judge -> filter
      -> rounds of [train -> answer -> judge-slm -> augment] until the SLM is within `loop.target_gap`
         points of the teacher (Rate(>=3) on held-out documents) or `loop.max_rounds`
      -> quantize -> judge-quantized -> report

Documents are split once into `train` (teacher labels become SFT data), `eval` (never trained on: the
teacher and every SLM answer the same prompts there, which gives Table 1) and `pool` (prompts the SLM
answers each round; its good answers are added to the SFT data, as in the paper's iterative filtering).
Every stage reads and writes plain files and is recorded in `manifest.json` (see `mga.distill.pipeline.manifest`).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json, write_rows
from mga.distill.core.schema import chunk_key, rewrite_key, score_of
from mga.distill.pipeline.manifest import Manifest
from mga.distill.pipeline.recipe import RunConfig, dump_recipe

STAGES = (
    "chunk",
    "label-pairs",
    "check-pairs",
    "split",
    "label-rewrites",
    "judge",
    "filter",
    "train",
    "answer",
    "judge-slm",
    "augment",
    "quantize",
    "judge-quantized",
    "report",
)


class StopPipeline(Exception):
    """Raised to end a run early at `--until`."""


def rate_ge3(rows: list[dict[str, Any]]) -> float:
    """Rate(>=3) in percent, unscored rows counting as failures (the paper's convention)."""
    if not rows:
        return 0.0
    return 100.0 * sum(1 for r in rows if (score_of(r) or 0) >= 3) / len(rows)


def _docid(row: dict[str, Any]) -> str:
    return str(row["meta"]["docid"])


def _only_docs(rows: list[dict[str, Any]], docids: set[str]) -> list[dict[str, Any]]:
    return [r for r in rows if _docid(r) in docids]


class Pipeline:
    def __init__(self, config: RunConfig, *, from_stage: str | None = None, until: str | None = None):
        for name, value in (("--from", from_stage), ("--until", until)):
            if value is not None and value not in STAGES:
                raise MgaError(f"{name} {value!r}: unknown stage (stages: {', '.join(STAGES)})")
        self.cfg = config
        self.dir = config.out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.dir / "manifest.json")
        self.from_index = STAGES.index(from_stage) if from_stage else None
        self.until_index = STAGES.index(until) if until else None
        self.language = config.language
        self.summary: list[dict[str, Any]] = []
        from mga.distill.generate.accounting import Accounting

        self.accounting = Accounting.for_teacher(config.teacher)
        self.current = ""
        self.notes: list[str] = []  # said in the report
        self.markers: dict[Path, Path] = {}  # checkpoint -> marker file written when it was trained
        self.cache_path = self.dir / "cache.sqlite"

    # -- plumbing --------------------------------------------------------------------------------------

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def stage(
        self,
        name: str,
        fn: Callable[[], dict[str, Any] | None],
        *,
        inputs: list[Path],
        outputs: list[Path],
        config: Any = None,
    ) -> dict[str, Any]:
        base = name.split("@")[0]
        index = STAGES.index(base)
        if self.until_index is not None and index > self.until_index:
            raise StopPipeline(name)
        force = self.from_index is not None and index >= self.from_index
        console.print(f"[bold cyan]▶ {name}[/]")
        self.current = name
        ran, rec = self.manifest.run(name, fn, inputs=inputs, outputs=outputs, config=config, force=force)
        note = f"done in {rec.seconds:.1f}s" if ran else "up to date, skipped"
        console.print(f"  {name}: {note}", markup=False)
        self.summary.append({"stage": name, "ran": ran, "seconds": rec.seconds, **rec.info})
        return rec.info

    def generator(self, backend_cfg):
        """A generator whose requests are cached in the run and counted under the running stage."""
        from mga.distill.generate.teacher import make_generator

        return make_generator(backend_cfg, cache_path=self.cache_path, accounting=self.accounting, stage=self.current)

    def slm_cfg(self, checkpoint: Path):
        return self.cfg.teacher.model_copy(update={"backend": "transformers", "model": str(checkpoint)})

    # -- stages ----------------------------------------------------------------------------------------

    def run(self) -> Path:
        (self.dir / "recipe.yaml").write_text(dump_recipe(self.cfg), encoding="utf-8")
        started = time.time()
        try:
            self._run()
        except StopPipeline as stop:
            console.print(f"stopped before {stop} (--until)", markup=False)
        finally:
            self.accounting.write(self.dir / "accounting.json")
            self._print_summary(time.time() - started)
        return self.dir

    def _run(self) -> None:
        cfg = self.cfg
        variants = list(cfg.label.variants)
        kept_pairs, split_path = self._teacher_pairs()
        split = self._split(kept_pairs, split_path)
        rewrites = {v: self._teacher_rewrites(kept_pairs, split_path, v) for v in variants}
        judged = {v: self._judge(rewrites[v], self.path("judged", f"teacher.{v}.jsonl"), f"judge@teacher.{v}") for v in variants}
        main = variants[0]
        kept_rewrites = self._filter(judged[main], "teacher")

        eval_pairs = self.path("heldout", "pairs.eval.jsonl")
        pool_pairs = self.path("heldout", "pairs.pool.jsonl")
        self.stage(
            "split@prompts",
            lambda: self._write_heldout(kept_pairs, split, eval_pairs, pool_pairs),
            inputs=[kept_pairs, split_path],
            outputs=[eval_pairs, pool_pairs],
        )
        teacher_eval = _only_docs(read_rows(judged[main]), split["eval"])
        teacher_rate = rate_ge3(teacher_eval)
        models: dict[str, list[dict[str, Any]]] = {f"teacher ({cfg.teacher.model if not cfg.label.reference else 'reference labels'})": teacher_eval}
        loss_curves: list[Path] = []
        extra_pairs: list[dict[str, Any]] = []
        extra_rewrites: list[dict[str, Any]] = []
        checkpoints: dict[str, Path] = {}
        rounds: list[dict[str, Any]] = []
        for r in range(1, cfg.loop.max_rounds + 1):
            checkpoints = {
                "pairs": self._train(f"round-{r}", "pairs", kept_pairs, split["train"], extra_pairs),
                "rewrite": self._train(f"round-{r}", "rewrite", kept_rewrites, split["train"], extra_rewrites),
            }
            for stage, checkpoint in checkpoints.items():  # one uniquely named copy per round and stage
                if (checkpoint.parent / "loss.png").exists():
                    loss_curves.append(self.path("report", f"loss.round-{r}.{stage}.png"))
                    shutil.copyfile(checkpoint.parent / "loss.png", loss_curves[-1])
            slm = self._answer(r, checkpoints, eval_pairs, pool_pairs, main)
            slm_eval = read_rows(slm["judged_eval"])
            slm_rate = rate_ge3(slm_eval)
            models[f"SLM round {r}"] = slm_eval
            gap = teacher_rate - slm_rate
            rounds.append({"round": r, "teacher_rate": round(teacher_rate, 2), "slm_rate": round(slm_rate, 2),
                           "gap": round(gap, 2), "pairs_valid_rate": slm["pairs_valid_rate"]})
            console.print(f"  round {r}: teacher {teacher_rate:.2f}% vs SLM {slm_rate:.2f}% (gap {gap:+.2f} points)", markup=False)
            if gap <= cfg.loop.target_gap or r == cfg.loop.max_rounds:
                break
            extra_pairs, extra_rewrites = self._augment(r, slm, extra_pairs, extra_rewrites)
        write_json(self.path("rounds.json"), rounds)
        table2 = {}
        if len(variants) > 1:  # the paper's Table 2: one SLM-2 per prompt variant, judged on the same prompts
            table2 = {f"SLM · {main}": models[f"SLM round {len(rounds)}"]}
            for variant in variants[1:]:
                table2.update(self._variant_slm(variant, judged[variant], split["train"], eval_pairs))

        quantized = self._quantize(checkpoints, eval_pairs, main, models)
        self._report(models, judged, table2, loss_curves, rounds, quantized)

    def _teacher_pairs(self) -> tuple[Path, Path]:
        """Stage-1 labels for every chunk (teacher or reference), then the rule check; (kept pairs, split path)."""
        cfg = self.cfg
        chunks = self.path("corpus", "chunks.jsonl")
        pairs = self.path("labels", "pairs.jsonl")
        kept = self.path("labels", "pairs.kept.jsonl")
        rejected = self.path("labels", "pairs.rejected.jsonl")
        reference = self._reference_path()
        if reference:
            from mga.judge.reference import reference_chunk_rows, reference_pairs_rows

            def copy(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
                write_rows(out, rows)
                return {"rows_out": len(rows)}

            self.stage("chunk", lambda: copy(chunks, reference_chunk_rows(reference)),
                       inputs=[reference], outputs=[chunks], config="reference")
            self.stage("label-pairs", lambda: copy(pairs, reference_pairs_rows(reference)),
                       inputs=[reference], outputs=[pairs], config="reference")
        else:
            from mga.distill.core.config import default_corpus_path
            from mga.distill.label.chunk import chunk_corpus
            from mga.distill.label.labeling import label_pairs

            corpus = Path(cfg.corpus.path) if cfg.corpus.path else default_corpus_path()

            def do_chunk():
                chunk_corpus(corpus, chunks, cfg.corpus, seed=cfg.seed)
                return {"rows_out": len(read_rows(chunks))}

            def do_pairs():
                label_pairs(chunks, pairs, self.generator(self.cfg.teacher), language=self.language,
                            num_pairs=cfg.label.num_pairs, params=cfg.teacher.pairs,
                            max_validation_attempts=cfg.label.max_validation_attempts)
                return {"rows_in": len(read_rows(chunks)), "rows_out": len(read_rows(pairs))}

            self.stage("chunk", do_chunk, inputs=[corpus], outputs=[chunks], config=cfg.corpus.model_dump(mode="json"))
            self.stage("label-pairs", do_pairs, inputs=[chunks], outputs=[pairs],
                       config=[cfg.teacher.model, cfg.teacher.pairs.model_dump(), cfg.label.num_pairs, self.language])

        def do_check():
            from mga.judge.pairs_check import parse_pairs

            good, bad = [], []
            for row in read_rows(pairs):
                reason = row.get("reason") if row.get("status") != "ok" else None
                if reason is None:
                    _, reason = parse_pairs(json.dumps({"pairs": row.get("pairs") or []}), cfg.label.num_pairs)
                (bad if reason else good).append({**row, "reason": reason} if reason else row)
            write_rows(kept, good)
            write_rows(rejected, bad)
            return {"rows_in": len(good) + len(bad), "rows_out": len(good)}

        self.stage("check-pairs", do_check, inputs=[pairs], outputs=[kept, rejected], config=cfg.label.num_pairs)
        return kept, self.path("split.json")

    def _reference_path(self) -> Path | None:
        ref = self.cfg.label.reference
        if ref is None:
            return None
        if str(ref) == "bundled":
            from mga.judge.reference import default_reference_path

            return Path(default_reference_path(self.language))
        return Path(ref)

    def _split(self, kept_pairs: Path, split_path: Path) -> dict[str, set[str]]:
        loop = self.cfg.loop

        def do_split():
            docids = sorted({_docid(r) for r in read_rows(kept_pairs)})
            if len(docids) < 3:
                raise MgaError(f"only {len(docids)} documents have valid pairs: need at least 3 (train, eval, pool)")
            random.Random(self.cfg.seed).shuffle(docids)
            n_eval = max(1, round(len(docids) * loop.heldout_fraction))
            n_pool = max(1, round(len(docids) * loop.pool_fraction)) if loop.pool_fraction > 0 else 0
            split = {"eval": docids[:n_eval], "pool": docids[n_eval:n_eval + n_pool], "train": docids[n_eval + n_pool:]}
            write_json(split_path, split)
            return {k: len(v) for k, v in split.items()}

        self.stage("split", do_split, inputs=[kept_pairs], outputs=[split_path],
                   config=[self.cfg.seed, loop.heldout_fraction, loop.pool_fraction])
        data = json.loads(split_path.read_text())
        return {k: set(v) for k, v in data.items()}

    def _teacher_rewrites(self, kept_pairs: Path, split_path: Path, variant: str) -> Path:
        """Teacher rewrites for train + eval documents (pool documents only need prompts)."""
        out = self.path("labels", f"rewrites.{variant}.jsonl")
        reference = self._reference_path()

        def do_rewrites():
            split = json.loads(split_path.read_text())
            docs = set(split["train"]) | set(split["eval"])
            if reference:
                from mga.judge.reference import reference_rewrite_rows

                if variant != "base":
                    raise MgaError(f"reference labels hold Base rewrites only; variant '{variant}' needs a teacher")
                write_rows(out, _only_docs(reference_rewrite_rows(reference, variant=variant), docs))
            else:
                from mga.distill.label.labeling import label_rewrites

                subset = self.path("labels", "pairs.teacher-docs.jsonl")
                write_rows(subset, _only_docs(read_rows(kept_pairs), docs))
                label_rewrites(subset, out, self.generator(self.cfg.teacher),
                               language=self.language, variant=variant, params=self.cfg.teacher.rewrite)
            return {"rows_out": len(read_rows(out))}

        self.stage(f"label-rewrites@{variant}", do_rewrites, inputs=[kept_pairs, split_path] + ([reference] if reference else []),
                   outputs=[out], config=[self.cfg.teacher.model, self.cfg.teacher.rewrite.model_dump(), variant, self.language])
        return out

    def _judge(self, rows_path: Path, out: Path, name: str) -> Path:
        cfg = self.cfg

        def do_judge():
            from mga.judge.judging import judge_file

            generator = None
            if cfg.judge.backend == "llm":
                generator = self.generator(cfg.judge.endpoint or cfg.teacher)
            judge_file(rows_path, out, cfg.judge, language=self.language, generator=generator, params=cfg.teacher.judge)
            rows = read_rows(out)
            return {"rows_in": len(rows), "rows_out": len(rows), "rate_ge3": round(rate_ge3(rows), 2)}

        self.stage(name, do_judge, inputs=[rows_path], outputs=[out],
                   config=[cfg.judge.model_dump(mode="json"), cfg.teacher.judge.model_dump(), self.language,
                           (cfg.judge.endpoint or cfg.teacher).model if cfg.judge.backend == "llm" else "heuristic"])
        return out

    def _filter(self, judged: Path, name: str) -> Path:
        kept = self.path("filtered", f"{name}.kept.jsonl")
        rejected = self.path("filtered", f"{name}.rejected.jsonl")

        def do_filter():
            from mga.judge.filters import filter_file

            stats = filter_file(judged, kept, rejected, self.cfg.filter, language=self.language)
            return {"rows_in": len(read_rows(judged)), "rows_out": len(read_rows(kept)), "rejected": stats}

        self.stage(f"filter@{name}", do_filter, inputs=[judged], outputs=[kept, rejected],
                   config=self.cfg.filter.model_dump(mode="json"))
        return kept

    def _write_heldout(self, kept_pairs: Path, split: dict[str, set[str]], eval_pairs: Path, pool_pairs: Path):
        rows = read_rows(kept_pairs)
        write_rows(eval_pairs, _only_docs(rows, split["eval"]))
        write_rows(pool_pairs, _only_docs(rows, split["pool"]))
        return {"rows_out": len(read_rows(eval_pairs)) + len(read_rows(pool_pairs))}

    def _train(self, tag: str, stage: str, teacher_rows: Path, train_docs: set[str], extra: list[dict[str, Any]]) -> Path:
        """Train one tool model (`tag`: round-N, or variant-V for a prompt variant's SLM-2)."""
        cfg = self.cfg
        rows_path = self.path("sft", tag, f"{stage}.rows.jsonl")
        out_dir = self.path("models", tag, stage, "x").parent
        marker = out_dir / "mga_checkpoint.txt"

        def do_train():
            from mga.distill.train.sft import train_tool_model
            from mga.distill.train.sft_data import build_sft_datasets
            from mga.distill.train.tiny_model import resolve_student

            key = chunk_key if stage == "pairs" else rewrite_key
            rows = {key(row): row for row in _only_docs(read_rows(teacher_rows), train_docs)}
            rows.update({key(row): row for row in extra})
            write_rows(rows_path, list(rows.values()))
            train, evals = build_sft_datasets(rows_path, stage, out_dir / "data", language=self.language,
                                              eval_fraction=cfg.train.eval_fraction, seed=cfg.seed,
                                              num_pairs=cfg.label.num_pairs)
            student = resolve_student(cfg.train.student, self.dir / "students")
            checkpoint = train_tool_model(train, evals, out_dir, cfg.train, student=student, stage=stage)
            # the marker changes on every retraining, so stages that use the checkpoint see a new input
            marker.write_text(f"{checkpoint}\n{time.time()}\n")
            return {"rows_in": len(rows), "checkpoint": str(checkpoint)}

        self.stage(f"train@{stage}.{tag}", do_train, inputs=[teacher_rows], outputs=[marker],
                   config=[cfg.train.model_dump(mode="json"), self.language, [rewrite_key(x) if stage == "rewrite" else chunk_key(x) for x in extra]])
        checkpoint = Path(marker.read_text().splitlines()[0])
        self.markers[checkpoint] = marker
        return checkpoint

    def _answer(self, r: int, checkpoints: dict[str, Path], eval_pairs: Path, pool_pairs: Path, variant: str) -> dict[str, Any]:
        """SLM-1 proposes pairs and SLM-2 rewrites, on eval and pool prompts; the judge scores the rewrites."""
        from mga.distill.label.labeling import label_pairs, label_rewrites

        cfg = self.cfg
        folder = self.path("slm", f"round-{r}", "x").parent
        out: dict[str, Any] = {}
        for split_name, prompts in (("eval", eval_pairs), ("pool", pool_pairs)):
            pairs_out = folder / f"pairs.{split_name}.jsonl"
            rewrites_out = folder / f"rewrites.{split_name}.jsonl"

            def do_answer(prompts=prompts, pairs_out=pairs_out, rewrites_out=rewrites_out, split_name=split_name):
                chunks = folder / f"chunks.{split_name}.jsonl"
                write_rows(chunks, [{"meta": row["meta"]} for row in read_rows(prompts)])
                label_pairs(chunks, pairs_out, self.generator(self.slm_cfg(checkpoints["pairs"])),
                            language=self.language, num_pairs=cfg.label.num_pairs, params=cfg.teacher.pairs,
                            max_validation_attempts=1)
                # SLM-2 rewrites the teacher's pairs, so teacher and SLM answer the very same prompts
                label_rewrites(prompts, rewrites_out, self.generator(self.slm_cfg(checkpoints["rewrite"])),
                               language=self.language, variant=variant, params=cfg.teacher.rewrite)
                rows = read_rows(pairs_out)
                valid = sum(1 for row in rows if row.get("status") == "ok")
                return {"rows_out": len(read_rows(rewrites_out)), "pairs_valid": valid, "pairs_total": len(rows)}

            info = self.stage(f"answer@{split_name}.round-{r}", do_answer, inputs=[prompts, *(self.markers[c] for c in checkpoints.values())],
                              outputs=[pairs_out, rewrites_out], config=[cfg.teacher.pairs.model_dump(), cfg.teacher.rewrite.model_dump(), variant])
            judged = self._judge(rewrites_out, folder / f"judged.{split_name}.jsonl", f"judge-slm@{split_name}.round-{r}")
            out[f"judged_{split_name}"] = judged
            out[f"pairs_{split_name}"] = pairs_out
            if split_name == "eval":
                total = info.get("pairs_total") or 0
                out["pairs_valid_rate"] = round(100.0 * (info.get("pairs_valid") or 0) / total, 2) if total else 0.0
        return out

    def _augment(self, r: int, slm: dict[str, Any], extra_pairs: list, extra_rewrites: list) -> tuple[list, list]:
        """Good SLM answers on pool prompts join the SFT data of the next round."""
        kept = self._filter(slm["judged_pool"], f"slm-pool.round-{r}")
        new_rewrites = read_rows(kept)
        new_pairs = [row for row in read_rows(slm["pairs_pool"]) if row.get("status") == "ok"]
        console.print(f"  round {r}: +{len(new_pairs)} SLM pairs answers, +{len(new_rewrites)} SLM rewrites", markup=False)
        return extra_pairs + new_pairs, extra_rewrites + new_rewrites

    def _quantize(self, checkpoints: dict[str, Path], eval_pairs: Path, variant: str, models: dict) -> list[dict[str, Any]]:
        cfg = self.cfg
        results = []
        for scheme in cfg.quantize.schemes:
            outs = {}
            for stage, checkpoint in checkpoints.items():
                out_dir = self.path("quantized", f"{stage}-{scheme}", "x").parent
                marker = out_dir / "mga_quantize.json"

                def do_quantize(stage=stage, checkpoint=checkpoint, out_dir=out_dir):
                    from mga.distill.core.config import default_corpus_path
                    from mga.quantize.calibration import build_calibration
                    from mga.quantize.export import quantize_checkpoint
                    from transformers import AutoTokenizer

                    sft_train = checkpoint.parent / "data" / "train.jsonl"
                    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
                    texts, record = build_calibration(
                        tokenizer, sft_rows=sft_train if sft_train.exists() else None,
                        corpus_path=Path(cfg.corpus.path) if cfg.corpus.path else default_corpus_path(),
                        num_samples=cfg.quantize.calibration_samples, max_length=cfg.quantize.calibration_max_length,
                        corpus_fraction=cfg.quantize.corpus_fraction, seed=cfg.seed)
                    quantize_checkpoint(checkpoint, out_dir, scheme, group_size=cfg.quantize.group_size,
                                        desc_act=cfg.quantize.desc_act, calibration=texts, calibration_record=record,
                                        num_samples=cfg.quantize.calibration_samples,
                                        max_length=cfg.quantize.calibration_max_length, seed=cfg.seed)
                    info: dict[str, Any] = {"checkpoint": str(out_dir)}
                    sft_eval = checkpoint.parent / "data" / "eval.jsonl"
                    heldout = sft_eval if sft_eval.exists() and read_rows(sft_eval) else sft_train
                    if cfg.quantize.eval and heldout.exists():
                        from mga.quantize.evaluate import compare

                        info["compare"] = compare(checkpoint, out_dir, heldout, out_dir / "compare.json")
                    return info

                self.stage(f"quantize@{stage}.{scheme}", do_quantize, inputs=[self.markers[checkpoint]], outputs=[marker],
                           config=[cfg.quantize.model_dump(mode="json"), scheme])
                outs[stage] = out_dir
            models[f"SLM final + {scheme}"] = self._judged_eval_rewrites(
                outs["rewrite"], outs["rewrite"] / "mga_quantize.json", eval_pairs, variant,
                folder=f"quantized-{scheme}", answer_stage=f"judge-quantized@answer.{scheme}",
                judge_stage=f"judge-quantized@{scheme}")
            results.append({"scheme": scheme, **{stage: str(path) for stage, path in outs.items()}})
        return results

    def _variant_slm(self, variant: str, judged: Path, train_docs: set[str], eval_pairs: Path) -> dict[str, list]:
        """Train an SLM-2 on the kept teacher rewrites of one prompt variant; judge its eval answers."""
        kept = self._filter(judged, f"teacher.{variant}")
        if not _only_docs(read_rows(kept), train_docs):
            self.notes.append(f"No {variant} rewrite passed the filters: no SLM was trained for that variant.")
            return {}
        tag = f"variant-{variant}"
        checkpoint = self._train(tag, "rewrite", kept, train_docs, [])
        rows = self._judged_eval_rewrites(checkpoint, self.markers[checkpoint], eval_pairs, variant, folder=tag,
                                          answer_stage=f"answer@eval.{tag}", judge_stage=f"judge-slm@eval.{tag}")
        return {f"SLM · {variant}": rows}

    def _judged_eval_rewrites(self, checkpoint: Path, marker: Path, eval_pairs: Path, variant: str, *,
                              folder: str, answer_stage: str, judge_stage: str) -> list[dict[str, Any]]:
        """An SLM-2 checkpoint rewrites the eval prompts (the teacher's pairs); the judge scores the rewrites."""
        out = self.path("slm", folder, "rewrites.eval.jsonl")

        def do_answer():
            from mga.distill.label.labeling import label_rewrites

            label_rewrites(eval_pairs, out, self.generator(self.slm_cfg(checkpoint)), language=self.language,
                           variant=variant, params=self.cfg.teacher.rewrite)
            return {"rows_out": len(read_rows(out))}

        self.stage(answer_stage, do_answer, inputs=[eval_pairs, marker], outputs=[out],
                   config=[self.cfg.teacher.rewrite.model_dump(), variant])
        return read_rows(self._judge(out, out.with_name("judged.eval.jsonl"), judge_stage))

    def _report(self, models, judged_teacher, slm_variants, loss_curves, rounds, quantized) -> None:
        cfg = self.cfg
        out_dir = self.dir / "report"

        def do_report():
            from mga.judge.report import write_report

            notes = list(self.notes)
            judge_label = "heuristic judge (MiniLM cosine + keyword coverage; NOT an LLM judge)" if cfg.judge.backend == "heuristic" \
                else f"LLM judge ({(cfg.judge.endpoint or cfg.teacher).model}, Limited Consistency)"
            if cfg.judge.backend == "heuristic":
                notes.append("Scores come from the offline heuristic judge, not an LLM: they show the pipeline works, not model quality.")
            if cfg.train.student.startswith("tiny:"):
                notes.append(f"The student is a tiny randomly initialised model ({cfg.train.student}) trained for minutes on CPU: "
                             "expect it to fall far short of the teacher.")
            if cfg.label.reference:
                notes.append("Teacher labels are the bundled reference labels (written for this toolkit), not a live teacher.")
            sections = [("Rounds", _markdown_table(rounds))]
            for q in quantized:
                for stage in ("pairs", "rewrite"):
                    compare = Path(q[stage]) / "compare.json"
                    if compare.exists():
                        sections.append((f"Quantized vs full: {stage} model, {q['scheme']}", _compare_table(compare)))
            images = list(loss_curves)
            if cfg.report.embed:
                from mga.judge.embed_map import embedding_map

                rows = []
                for path in judged_teacher.values():
                    rows += read_rows(path)
                images.append(embedding_map(rows, out_dir / "embedding_map.png"))
            table2 = None
            if len(judged_teacher) > 1:
                table2 = {f"teacher · {v}": read_rows(p) for v, p in judged_teacher.items()} | slm_variants
            write_report(models, out_dir, judge_label=judge_label, reference_model=next(iter(models)), notes=notes,
                         images=images, sections=sections, **({"variants": table2} if table2 else {}))
            return {"report": str(out_dir / "report.html")}

        inputs = [self.dir / "rounds.json", *judged_teacher.values()]
        self.stage("report", do_report, inputs=inputs, outputs=[out_dir / "report.html"],
                   config=[cfg.report.model_dump(mode="json"), [q["scheme"] for q in quantized],
                           {name: [score_of(r) for r in rows] for name, rows in {**models, **slm_variants}.items()}])

    def _print_summary(self, seconds: float) -> None:
        from rich.table import Table

        table = Table(title=f"run {self.cfg.name}: {seconds:.1f}s, {self.dir}")
        table.add_column("stage", no_wrap=True)
        for col in ("status", "rows in", "rows out", "seconds", "requests", "tokens", "cost"):
            table.add_column(col, justify="right")
        for item in self.summary:
            name = item["stage"]
            counters = self.accounting.stages.get(name)
            cost = self.accounting.cost(counters) if counters else None
            table.add_row(name, "ran" if item["ran"] else "skipped", str(item.get("rows_in", "")), str(item.get("rows_out", "")),
                          f"{item['seconds'] or 0:.1f}", str(counters.requests) if counters else "",
                          str(counters.prompt_tokens + counters.completion_tokens) if counters else "",
                          "" if cost is None else f"${cost:,.4f}")
        console.print(table)


def _compare_table(path: Path) -> str:
    """`mga.quantize.evaluate.compare` output as a Markdown table: metric, full, quantized, ratio."""
    data = json.loads(path.read_text())
    metrics = [m for m in ("perplexity", "total_bytes", "linear_bytes", "load_s", "tokens_per_s") if m in data.get("full", {})]
    rows = [{"metric": m, "full": data["full"][m], "quantized": data["quantized"].get(m, ""),
             "ratio": data.get("ratios", {}).get(m, "")} for m in metrics]
    return _markdown_table(rows) + f"\n\nHeld-out rows: {data.get('rows', '?')} ({data.get('heldout', '')})"


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
