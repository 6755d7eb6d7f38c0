"""The runner: run a stage unless it is current, honour `--from`/`--until`, print the end-of-run summary.

It knows nothing of the method: `pipeline.py` says which stages run, in which order, on which files. A stage
is a plain function; the runner records it in `manifest.json` (fingerprint = its config + its input files),
so a rerun skips what is unchanged and redoes exactly what changed.

`--from` and `--until` name stage kinds (`STAGES`), and every instance of a kind counts: `--from K` redoes
every stage of kind K or later, `--until K` runs every stage of kind K or earlier. Where the pipeline runs
the same stages once per variant or scheme, each run is an `Instances` entry, so reaching a later kind ends
that instance only and the next one still runs its earlier kinds. A round of the loop needs the previous
round's later stages, so `--until` a loop kind ends the loop in its first round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mga.distill.core.config import TeacherConfig
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import writable_folder
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.budget import recorded_cost
from mga.distill.generate.protocol import Generator
from mga.distill.generate.teacher import make_generator
from mga.distill.pipeline.manifest import Manifest

# Every stage of `mga run`, in order; a stage's record is named `<stage>` or `<stage>@<what>` (one per
# variant, round, model...). `--from` / `--until` take these names.
STAGES = (
    "chunk",            # sample and chunk the corpus (or the reference set's documents)
    "label-pairs",      # stage 1: the teacher's 5 (genre, audience) pairs per chunk
    "check-pairs",      # rule check: valid JSON, exactly 5 distinct pairs
    "split",            # documents -> train / eval / pool; held-out prompts
    "label-rewrites",   # stage 2: the teacher's rewrite per pair, per prompt variant
    "judge",            # Limited-Consistency scores of the teacher's rewrites
    "filter",           # score >= min_score, keyword coverage, boilerplate
    "train",            # SFT of SLM-1 (pairs) and SLM-2 (rewrites), per round
    "answer",           # the SLMs answer eval and pool prompts
    "judge-slm",        # the judge scores the SLM's rewrites
    "augment",          # good SLM answers on pool prompts join the next round's SFT data
    "quantize",         # quantized exports of the final tool models
    "judge-quantized",  # the quantized SLM-2 answers the eval prompts, judged
    "analyze-loss",     # `analyze:` token-level loss analysis of two models (paper Figure 7)
    "report",           # Table 1 / Table 2, rounds, charts
)


class StopPipeline(Exception):
    """Raised to end a run early at `--until`."""


class Instances:
    """`with instances:` around each of several independent runs of the same stages (one per variant, scheme,
    model): a `StopPipeline` ends that run only; `end()` then stops the pipeline if any run stopped."""

    def __init__(self) -> None:
        self.stopped: StopPipeline | None = None

    def __enter__(self) -> Instances:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if isinstance(error, StopPipeline):
            self.stopped = self.stopped or error
            return True
        return False

    def end(self) -> None:
        if self.stopped is not None:
            raise self.stopped


class GeneratorFactory:
    """Builds a stage's generator when the stage runs: a skipped stage loads no model, and requests are
    cached in the run and counted under the stage that sends them."""

    def __init__(self, runner: Runner, endpoint: TeacherConfig):
        self.runner, self.endpoint = runner, endpoint

    def __call__(self) -> Generator:
        return make_generator(self.endpoint, cache_path=self.runner.cache_path, accounting=self.runner.accounting,
                              stage=self.runner.current, spent_before=self.runner.spent_before)


class Runner:
    def __init__(self, run_dir: Path, teacher: TeacherConfig, *, from_stage: str | None = None, until: str | None = None,
                 overwrite: bool = False):
        for option, value in (("--from", from_stage), ("--until", until)):
            if value is not None and value not in STAGES:
                raise MgaError(f"{option} {value!r}: unknown stage (stages: {', '.join(STAGES)})")
        self.dir = writable_folder(run_dir, "run folder")  # before any work: a read-only or full disk fails here
        self.manifest = Manifest(self.dir / "manifest.json")
        self.spent_before = recorded_cost(self.dir / "accounting.json")  # for teacher.max_budget_usd
        self.accounting = Accounting.for_teacher(teacher, path=self.dir / "accounting.json")  # durable ledger
        self.cache_path = self.dir / "cache.sqlite"
        self.from_index = STAGES.index(from_stage) if from_stage else None
        self.until_index = STAGES.index(until) if until else None
        self.overwrite = overwrite  # labeling stages that run redo another input's output instead of refusing it
        self.current = ""
        self.summary: list[dict[str, Any]] = []

    def each(self, items: Iterable[Any], fn: Callable[[Any], Any]) -> dict[Any, Any]:
        """`{item: fn(item)}` for independent runs of the same stages (one per variant, scheme): `--until` ends
        each run where it reaches a later kind, and the pipeline once every run went as far as it allows."""
        runs, out = Instances(), {}
        for item in items:
            with runs:
                out[item] = fn(item)
        runs.end()
        return out

    def generator(self, endpoint: TeacherConfig) -> GeneratorFactory:
        return GeneratorFactory(self, endpoint)

    def stage(self, name: str, fn: Callable[..., dict[str, Any] | None], *args: Any, inputs: list[Path],
              outputs: list[Path], config: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Run `fn(*args, **kwargs)` as stage `name` unless it is current; returns the info it recorded."""
        index = STAGES.index(name.split("@")[0])
        if self.until_index is not None and index > self.until_index:
            raise StopPipeline(name)
        force = self.from_index is not None and index >= self.from_index
        console.print(f"[bold cyan]▶ {name}[/]")
        self.current = name
        ran, rec = self.manifest.run(name, lambda: fn(*args, **kwargs), inputs=inputs, outputs=outputs,
                                     config=config, force=force)
        console.print(f"  {name}: " + (f"done in {rec.seconds:.1f}s" if ran else "up to date, skipped"), markup=False)
        self.summary.append({"stage": name, "ran": ran, "seconds": rec.seconds, **rec.info})
        return rec.info

    def finish(self, seconds: float, title: str) -> None:
        """Write the spending record and print one summary line per stage."""
        from rich.table import Table

        self.accounting.write(self.dir / "accounting.json")
        table = Table(title=f"{title}: {seconds:.1f}s, {self.dir}")
        table.add_column("stage", no_wrap=True)
        for col in ("status", "rows in", "rows out", "seconds", "requests", "tokens", "cost"):
            table.add_column(col, justify="right")
        for item in self.summary:
            counters = self.accounting.stages.get(item["stage"])
            cost = self.accounting.cost(counters) if counters else None
            table.add_row(item["stage"], "ran" if item["ran"] else "skipped", str(item.get("rows_in", "")),
                          str(item.get("rows_out", "")), f"{item['seconds'] or 0:.1f}",
                          str(counters.requests) if counters else "",
                          str(counters.prompt_tokens + counters.completion_tokens) if counters else "",
                          "" if cost is None else f"${cost:,.4f}")
        console.print(table)
        for flag in (flag for item in self.summary for flag in item.get("flags", [])):
            console.print(f"warning: {flag}", markup=False, soft_wrap=True)


def timed(runner: Runner, title: str, body: Callable[[], None]) -> Path:
    """Run `body`, stopping quietly at `--until`; always write accounting and print the summary."""
    started = time.time()
    try:
        body()
    except StopPipeline as stop:
        console.print(f"stopped before {stop} (--until)", markup=False)
    finally:
        runner.finish(time.time() - started, title)
    return runner.dir
