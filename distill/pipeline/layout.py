"""Where a run keeps its files (README "The run directory"): one place that names them and makes folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mga.distill.core.io import write_json


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    def file(self, *parts: str) -> Path:
        """A file under the run directory; its folder is created."""
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def folder(self, *parts: str) -> Path:
        """A folder under the run directory, created."""
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, name: str, data: Any) -> Path:
        return write_json(self.file(name), data)
