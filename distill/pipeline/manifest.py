"""The run manifest: one JSON file recording every stage's inputs, outputs, config hash and status.

A stage is skipped when it finished before with the same fingerprint (hash of its config and of its input
files) and its outputs still exist; anything that changed upstream changes the fingerprints downstream, so
only what changed is redone. Stages themselves resume mid-way (request cache, streaming outputs, trainer
checkpoints), so a crash anywhere resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.core.sources import resolve


def file_fingerprint(path: Path) -> str:
    """Content hash of a file. Checkpoints enter as the marker their stage writes (`stages.Checkpoint`), which
    holds the weights' digest stored beside them: computed once, not gigabytes hashed on every run."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.exists():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(b"<missing>")
    return digest.hexdigest()[:16]


CONTENT_HASH_LIMIT = 1 << 30


def fingerprint_paths(spec: str | Path, signature: Path) -> list[Path]:
    """What stands for a corpus among a stage's fingerprinted inputs: its files (hashed by content) when they
    total at most 1 GiB, else `signature`, written here: every file's path, size and modification time
    (hashing terabytes on every run would take hours)."""
    files = resolve(spec).files
    stats = [(path, path.stat()) for path in files]
    if sum(st.st_size for _, st in stats) <= CONTENT_HASH_LIMIT:
        return list(files)
    write_json(signature, {"corpus": str(spec), "files": [[str(p), st.st_size, st.st_mtime_ns] for p, st in stats]})
    return [signature]


def config_fingerprint(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageRecord:
    status: str = "pending"  # pending | running | done | failed
    fingerprint: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    started: float | None = None
    seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Manifest:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.stages: dict[str, StageRecord] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.stages = {name: StageRecord(**rec) for name, rec in data.get("stages", {}).items()}
            except (ValueError, TypeError, AttributeError) as e:
                raise MgaError(f"{self.path}: corrupt run manifest ({e.__class__.__name__}: {str(e)[:200]}); fix or "
                               "delete it (every stage then runs again, reusing cached answers)") from None

    def save(self) -> None:
        write_json(self.path, {"stages": {name: vars(rec) for name, rec in self.stages.items()}})

    def is_current(self, name: str, fingerprint: str) -> bool:
        rec = self.stages.get(name)
        return bool(
            rec
            and rec.status == "done"
            and rec.fingerprint == fingerprint
            and all(Path(p).exists() for p in rec.outputs)
        )

    def run(
        self,
        name: str,
        fn: Callable[[], dict[str, Any] | None],
        *,
        inputs: list[Path],
        outputs: list[Path],
        config: Any,
        force: bool = False,
    ) -> tuple[bool, StageRecord]:
        """Run `fn` unless the stage is current; returns (ran, record). `fn` may return info for the summary."""
        fingerprint = config_fingerprint([config, [file_fingerprint(p) for p in inputs]])
        if not force and self.is_current(name, fingerprint):
            return False, self.stages[name]
        rec = StageRecord(
            status="running",
            fingerprint=fingerprint,
            inputs=[str(p) for p in inputs],
            outputs=[str(p) for p in outputs],
            started=time.time(),
        )
        self.stages[name] = rec
        self.save()
        try:
            rec.info = fn() or {}
        except BaseException as e:
            rec.status, rec.error = "failed", f"{type(e).__name__}: {e}"[:500]
            rec.seconds = round(time.time() - rec.started, 2)
            self.save()
            raise
        rec.status, rec.seconds = "done", round(time.time() - rec.started, 2)
        self.save()
        return True, rec
