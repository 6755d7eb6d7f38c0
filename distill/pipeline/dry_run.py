"""`mga run --dry-run` / `mga label --dry-run`: per stage, what the run would send and spend. Nothing is sent.

The requests are built as the stages build them (same prompts, same cache keys), so answers already in the
run's cache and rows already in its outputs are excluded exactly. Where a stage's input does not exist yet
(rewrites need stage-1 pairs, the judge needs rewrites), every earlier answer is assumed to pass: counts
are exact for the teacher stages when it does, token counts of unknown text are estimates (placeholder pairs;
the document stands in for an unwritten rewrite). The SLM rounds' judge calls are a bound (`loop.max_rounds`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.config import TeacherConfig, default_corpus_path
from mga.distill.core.io import done_keys, read_rows, write_rows
from mga.distill.core.prompts import judge_messages
from mga.distill.core.schema import OK, chunk_key, rewrite_jobs, rewrite_key, unjudgeable_reason
from mga.distill.core.tokens import token_counter
from mga.distill.generate import structured
from mga.distill.generate.cache import RequestCache
from mga.distill.generate.estimate import StageEstimate, estimate_stage
from mga.distill.generate.protocol import Request
from mga.distill.label.chunk import chunk_corpus
from mga.distill.label.rows import pairs_job, pairs_request, rewrite_job, rewrite_request
from mga.distill.pipeline.recipe import RunConfig
from mga.distill.train.split import only_docs, read_split, split_documents
from mga.judge.controls import with_controls
from mga.judge.llm_judge import judge_request
from mga.judge.reference import (
    default_reference_path,
    reference_chunk_rows,
    reference_pairs_rows,
)


def pairs_requests(chunks: list[dict[str, Any]], cfg: RunConfig, done: set[str]) -> list[Request]:
    """Stage 1's requests, built by stage 1's own job builder."""
    params, n = cfg.teacher.pairs, cfg.label.num_pairs
    jobs = {chunk_key(c): pairs_job(c["meta"], cfg.language, n, params, cfg.teacher.model) for c in chunks}
    return [pairs_request(key, job, params, n) for key, job in jobs.items() if key not in done]


def rewrite_rows(pairs_rows: list[dict[str, Any]], variant: str) -> Iterator[dict[str, Any]]:
    """One job per (ok chunk, pair), keyed as stage 2 keys its rows."""
    for row in pairs_rows:
        for _, meta in rewrite_jobs({"status": OK, **row}, variant):
            yield {"meta": meta, "variant": variant}


def rewrite_requests(pairs_rows: list[dict[str, Any]], cfg: RunConfig, variant: str, done: set[str]) -> list[Request]:
    """Stage 2's requests, built by stage 2's own job and request builders."""
    params = cfg.teacher.rewrite
    jobs = {rewrite_key(job): rewrite_job(job["meta"], variant, cfg.language, params, cfg.teacher.model)
            for job in rewrite_rows(pairs_rows, variant)}
    return [rewrite_request(k, job, params, cfg.language) for k, job in jobs.items() if k not in done]


def judge_requests(rows: list[dict[str, Any]], cfg: RunConfig, done: set[str], chunks: list[dict[str, Any]]) -> list[Request]:
    """The judge's requests for `rows` and for its controls (drawn as `judge_file` draws them)."""
    rows = with_controls(rows, cfg.judge.controls, seed=cfg.seed, language=cfg.language, donors=chunks)
    return [judge_request(rewrite_key(r), judge_messages(r["meta"]["raw_text"], r["content_split"], cfg.language),
                          cfg.teacher.judge, cfg.language, logprobs=cfg.judge.logprobs)
            for r in rows if rewrite_key(r) not in done and not unjudgeable_reason(r)]


def _stand_in(job: dict[str, Any]) -> dict[str, Any]:
    """A rewrite not yet written: its document stands in (about as long), told apart by variant and pair."""
    meta = job["meta"]
    tag = f"({job['variant']}: {meta['genre']}; {meta['audience']})"
    return {**job, "content_split": f"{meta['raw_text']}\n{tag}", "status": OK}


def _stand_in_pairs(chunks: list[dict[str, Any]], known: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Stage-1 answers where they exist, else `n` placeholder pairs per chunk (every answer assumed to pass)."""
    have = {chunk_key(r): r for r in known}
    placeholder = [{"genre": f"genre {i}", "audience": f"audience {i}"} for i in range(n)]
    return [have.get(chunk_key(c)) or {"meta": c["meta"], "pairs": placeholder, "status": OK} for c in chunks]


class DryRun:
    """Builds each stage's requests in a scratch folder and estimates them against the run's cache."""

    def __init__(self, cfg: RunConfig, latency_s: float, cache_path: Path | None = None):
        self.cfg, self.latency = cfg, latency_s
        self.root = cfg.out_dir
        cache_path = cache_path or self.root / "cache.sqlite"
        self.cache = RequestCache(cache_path) if cache_path.exists() else None
        self.count = token_counter(cfg.corpus.tokenizer)
        self.seen: set[str] = set()  # requests counted by an earlier stage: cache hits by then

    def estimate(self, stage: str, requests: list[Request], endpoint: TeacherConfig, expected: Any,
                 max_attempts: int = 1, rounds: int = 1, note: str | None = None) -> StageEstimate:
        est = estimate_stage(stage, requests, endpoint, cache=self.cache if rounds == 1 else None,
                             count=self.count, latency_s=self.latency,
                             expected_output=expected, max_attempts=max_attempts,
                             seen=self.seen if rounds == 1 else None)
        for key in ("requests", "max_requests", "input_tokens", "output_bound", "output_expected", "wall_s",
                    "cost_bound", "cost_expected"):  # each round asks about new SLM answers
            if getattr(est, key) is not None:
                setattr(est, key, getattr(est, key) * rounds)
        if note:
            est.notes.append(note)
        if modes := sorted({structured.wanted(r) for r in requests} - {None}):
            est.notes.append(f"structured output {'/'.join(modes)}: each request carries the answer's JSON schema "
                             "(auto: where the endpoint takes it; its tokens are not in this estimate)")
        return est

    def doc_tokens(self, request: Request) -> int:
        """The expected length of a rewrite: the document's, which is about half of the prompt."""
        return self.count(request.messages[-1]["content"]) // 2

    def run(self) -> list[StageEstimate]:
        cfg = self.cfg
        with tempfile.TemporaryDirectory(prefix="mga-dry-run-") as tmp:
            return self._stages(cfg, Path(tmp))

    def _stages(self, cfg: RunConfig, tmp: Path) -> list[StageEstimate]:
        root, n = self.root, cfg.label.num_pairs
        judge_endpoint = cfg.judge.endpoint or cfg.teacher
        out: list[StageEstimate] = []
        reference = cfg.label.reference
        if reference is not None:
            ref = Path(default_reference_path(cfg.language)) if str(reference) == "bundled" else Path(reference)
            chunks, known = reference_chunk_rows(ref), reference_pairs_rows(ref)
        else:
            corpus = Path(cfg.corpus.path) if cfg.corpus.path else default_corpus_path()
            chunks = read_rows(chunk_corpus(corpus, tmp / "chunks.jsonl", cfg.corpus, seed=cfg.seed))
            pairs_file = root / "labels" / "pairs.jsonl"
            known = read_rows(pairs_file) if pairs_file.exists() else []
            out.append(self.estimate("label-pairs", pairs_requests(chunks, cfg, done_keys(pairs_file, chunk_key)), cfg.teacher,
                                     lambda r: 20 * n, max_attempts=cfg.label.max_validation_attempts))
        kept = [r for r in _stand_in_pairs(chunks, known, n) if r.get("status", OK) == OK and len(r.get("pairs") or []) == n]
        kept_file = write_rows(tmp / "pairs.kept.jsonl", kept)
        split_file = root / "split.json" if known and (root / "split.json").exists() else tmp / "split.json"
        if split_file.parent == tmp:
            split_documents(kept_file, split_file, heldout_fraction=cfg.loop.heldout_fraction,
                            pool_fraction=cfg.loop.pool_fraction, seed=cfg.seed)
        parts = read_split(split_file)
        teacher_docs = only_docs(kept, parts["train"] | parts["eval"])

        llm_judge = cfg.judge.backend == "llm"
        for variant in cfg.label.variants:
            rewrites_file = root / "labels" / f"rewrites.{variant}.jsonl"
            if reference is None:
                out.append(self.estimate(f"label-rewrites@{variant}",
                                         rewrite_requests(teacher_docs, cfg, variant, done_keys(rewrites_file, rewrite_key)),
                                         cfg.teacher, self.doc_tokens, max_attempts=cfg.label.max_validation_attempts))
            if llm_judge:
                written = {rewrite_key(r): r for r in (read_rows(rewrites_file) if rewrites_file.exists() else [])}
                rows = [written.get(rewrite_key(job)) or _stand_in(job) for job in rewrite_rows(teacher_docs, variant)]
                judged_file = root / "judged" / f"teacher.{variant}.jsonl"
                out.append(self.estimate(f"judge@teacher.{variant}", judge_requests(rows, cfg, done_keys(judged_file, rewrite_key), chunks),
                                         judge_endpoint, lambda r: 200, max_attempts=cfg.judge.max_parse_attempts))
        if llm_judge:
            out += self._slm_judging(cfg, kept, parts, judge_endpoint, chunks)
        return out

    def _slm_judging(self, cfg: RunConfig, kept: list[dict[str, Any]], parts: dict[str, set[str]],
                     endpoint: TeacherConfig, chunks: list[dict[str, Any]]) -> list[StageEstimate]:
        """Bounds: the judge scores the SLM's rewrites of the eval and pool prompts in every round, then
        those of each extra variant's SLM and of each quantized model on the eval prompts."""
        main = cfg.label.variants[0]

        def rows(docs: set[str], variant: str) -> list[dict[str, Any]]:
            return [_stand_in(job) for job in rewrite_rows(only_docs(kept, docs), variant)]

        each_round = [r for split in ("eval", "pool") for r in judge_requests(rows(parts[split], main), cfg, set(), chunks)]
        eval_only = judge_requests(rows(parts["eval"], main), cfg, set(), chunks)
        extra = len(cfg.label.variants) - 1 + len(cfg.quantize.schemes)
        note = "SLM rewrites unknown: the document stands in for each"
        out = [self.estimate(f"judge-slm (up to {cfg.loop.max_rounds} rounds)", each_round, endpoint, lambda r: 200,
                             max_attempts=cfg.judge.max_parse_attempts, rounds=cfg.loop.max_rounds,
                             note=f"bound: every round runs; {note}")]
        if extra:
            out.append(self.estimate("judge-slm@variants + judge-quantized", eval_only, endpoint, lambda r: 200,
                                     max_attempts=cfg.judge.max_parse_attempts, rounds=extra, note=note))
        return out


def dry_run(cfg: RunConfig, *, latency_s: float = 2.0) -> list[StageEstimate]:
    """The per-stage estimates of `mga run` for recipe `cfg` (see the module docstring)."""
    return DryRun(cfg, latency_s).run()


def print_notes(estimates: list[StageEstimate]) -> None:
    from mga.distill.core.console import console

    for est in estimates:
        for note in est.notes:
            console.print(f"  {est.stage}: {note}", markup=False, soft_wrap=True)


def label_dry_run(stage: str, input_path: Path, output: Path, cfg: RunConfig, *, variant: str, chunks: bool,
                  cache_path: Path, latency_s: float = 2.0) -> list[StageEstimate]:
    """The estimate of one `mga label` call (`chunks`: the input is already chunked)."""
    dry = DryRun(cfg, latency_s, cache_path)
    with tempfile.TemporaryDirectory(prefix="mga-dry-run-") as tmp:
        if stage == "pairs":
            rows = read_rows(input_path if chunks else chunk_corpus(input_path, Path(tmp) / "chunks.jsonl", cfg.corpus,
                                                                    seed=cfg.seed))
            requests = pairs_requests(rows, cfg, done_keys(output, chunk_key))
            return [dry.estimate("label-pairs", requests, cfg.teacher, lambda r: 20 * cfg.label.num_pairs,
                                 max_attempts=cfg.label.max_validation_attempts)]
    requests = rewrite_requests(read_rows(input_path), cfg, variant, done_keys(output, rewrite_key))
    return [dry.estimate(f"label-rewrites@{variant}", requests, cfg.teacher, dry.doc_tokens,
                         max_attempts=cfg.label.max_validation_attempts)]
