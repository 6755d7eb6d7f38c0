"""Planning one training: resolve the student, fingerprint config and data, skip what is done, clear stale work.

`train_done.json` marks a finished training with its fingerprint (a rerun with the same config and data
returns at once); `train_started.json` holds the fingerprint of the training under way, whose trainer
checkpoints a rerun resumes from, and which are cleared when the config or the data changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mga.distill.core.console import console
from mga.distill.core.weights import file_digest
from mga.distill.train.config import TrainConfig

DONE = "train_done.json"
STARTED = "train_started.json"


def _file_digest(path: Path | None) -> str | None:
    if path is None or not Path(path).exists():
        return None
    return file_digest(Path(path))


def _fingerprint(cfg: TrainConfig, student: str, stage: str, train_path: Path, eval_path: Path | None) -> str:
    payload = {
        "config": cfg.model_dump(mode="json"),
        "student": student,
        "stage": stage,
        "train": _file_digest(train_path),
        "eval": _file_digest(eval_path),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TrainJob:
    """One training, planned: resolved paths and student, its fingerprint, and the checkpoint if already done."""

    train_path: Path
    eval_path: Path | None
    out_dir: Path
    student: str
    stage: str
    fingerprint: str
    done: Path | None = None


def plan_run(
    train_path: str | Path, eval_path: str | Path | None, out_dir: str | Path, cfg: TrainConfig, *, student: str,
    stage: str,
) -> TrainJob:
    """Resolve the student (a tiny model is built here), fingerprint config and data, find a finished run with
    the same fingerprint, clear trainer checkpoints of another config. Runs once, in the launching process."""
    from mga.distill.train.tiny_model import resolve_student

    train_path, out_dir = Path(train_path), Path(out_dir)
    eval_path = Path(eval_path) if eval_path else None
    student = resolve_student(student, out_dir / "students")
    job = TrainJob(train_path, eval_path, out_dir, student, stage,
                   _fingerprint(cfg, student, stage, train_path, eval_path))
    done_file, started_file, trainer_dir = out_dir / DONE, out_dir / STARTED, out_dir / "trainer"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done.get("fingerprint") == job.fingerprint and Path(done["checkpoint"]).exists():
            console.print(f"train ({stage}): already trained with this config -> {done['checkpoint']}", markup=False, soft_wrap=True)
            job.done = Path(done["checkpoint"])
            return job
        done_file.unlink()
    if started_file.exists() and json.loads(started_file.read_text()).get("fingerprint") != job.fingerprint:
        shutil.rmtree(trainer_dir, ignore_errors=True)  # checkpoints of another config: start over
    return job
