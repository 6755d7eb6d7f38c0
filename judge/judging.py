"""One entry point for judging a file, whichever backend the recipe names."""

from __future__ import annotations

from pathlib import Path

from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.generate.protocol import Generator
from mga.judge.config import JudgeConfig


def judge_generator(endpoint: TeacherConfig, cache_path: Path, accounting) -> Generator:
    """The teacher client for judge calls: same cache, retries and accounting as labeling (stage "judge")."""
    from mga.distill.generate.teacher import make_generator

    return make_generator(endpoint, cache_path=cache_path, accounting=accounting, stage="judge")


def judge_file(
    in_path: str | Path,
    out_path: str | Path,
    cfg: JudgeConfig | None = None,
    *,
    language: str = "en",
    generator: Generator | None = None,
    params: GenerationParams | None = None,
    teacher: TeacherConfig | None = None,
    work_dir: str | Path | None = None,
    seed: int = 0,
    donors: str | Path | None = None,
) -> Path:
    """Judge the rewrite rows of `in_path` into `out_path` with `cfg.backend` (llm or heuristic).

    The judge's controls (`cfg.controls` documents sampled with `seed`, see `mga.judge.controls`; other
    documents also drawn from the `donors` file) are judged with the real rows, by the same judge and cache,
    and written after them, marked `control`.
    The LLM backend uses `generator` when given, else a client for `cfg.endpoint` (default: `teacher`)
    whose request cache and accounting.json live in `work_dir` (default: the output's folder)."""
    from mga.judge.controls import with_controls

    cfg = cfg or JudgeConfig()
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.exists():
        raise MgaError(f"{in_path}: file not found")
    if not read_rows(in_path):
        raise MgaError(f"{in_path}: no rows to judge (the input is empty)")
    rows = with_controls(read_rows(in_path), cfg.controls, seed=seed, language=language,
                         donors=read_rows(donors) if donors and cfg.controls else ())
    if cfg.backend == "heuristic":
        from mga.judge.heuristic import judge_rows_heuristic

        return judge_rows_heuristic(rows, out_path, language=language)
    endpoint = cfg.endpoint or teacher
    if generator is None:
        if endpoint is None:
            raise MgaError("judge.backend is llm but no endpoint is set: set judge.endpoint or teacher.*, "
                           "or use judge.backend=heuristic (offline)")
        from mga.distill.core.console import console
        from mga.distill.generate.accounting import Accounting

        folder = Path(work_dir) if work_dir else out_path.parent
        accounting = Accounting.for_teacher(endpoint, path=folder / "accounting.json")
        generator = judge_generator(endpoint, folder / "cache" / "judge.sqlite", accounting)
        try:
            return _judge_llm(rows, out_path, cfg, generator, params, endpoint, language)
        finally:
            accounting.write()
            console.print(accounting.table("judge accounting"))
    return _judge_llm(rows, out_path, cfg, generator, params, endpoint, language)


def _judge_llm(rows, out_path, cfg, generator, params, endpoint, language) -> Path:
    from mga.judge.llm_judge import judge_rows

    if params is None:
        params = endpoint.judge if endpoint is not None else TeacherConfig().judge
    return judge_rows(rows, out_path, generator, language=language, params=params,
                      max_parse_attempts=cfg.max_parse_attempts, logprobs=cfg.logprobs)


def judged_rate(rows: list[dict], label: str, *, work_dir: str | Path, cfg: JudgeConfig | None = None,
                language: str = "en", teacher: TeacherConfig | None = None) -> float:
    """Rate(>=3) of rewrite rows judged with `cfg` (files kept in `work_dir` as rewrites/judged.<label>.jsonl)."""
    from mga.distill.core.io import write_rows
    from mga.judge.scores import summarize

    source = write_rows(Path(work_dir) / f"rewrites.{label}.jsonl", rows)
    judged = judge_file(source, Path(work_dir) / f"judged.{label}.jsonl", cfg, language=language, teacher=teacher)
    return summarize(read_rows(judged))["rate_ge3"]
