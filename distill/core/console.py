"""One rich console (stderr) and one progress style for every long loop in the toolkit.

On a terminal: a live bar with items/s and ETA. Anywhere else (a log file, a Slurm job): a plain line at
least every `MGA_PROGRESS_EVERY` seconds (default 10) with done/total, rate, failures and ETA, and one at
the end, so a stalled or failing job shows in its log while it runs.
"""

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
T = TypeVar("T")
PLAIN_EVERY_S = 10.0


def new_progress() -> Progress:
    """A progress display with items/s and ETA, hidden when stderr is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class _PlainProgress:
    """Counts and a timer thread printing `description: done/total (pct), rate/s, N failed, ETA` lines."""

    def __init__(self, description: str, total: int | None, every: float):
        self.description, self.total, self.every = description, total, every
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="mga-progress")

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        done = f"{self.done:,}/{self.total:,} ({100 * self.done / max(self.total, 1):.0f}%)" if self.total else f"{self.done:,}"
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {_duration((self.total - self.done) / rate)}"
        return f"{self.description}: {done}, {rate:.1f}/s, {self.failed:,} failed, {_duration(elapsed)} elapsed{eta}"

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> "_PlainProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        console.print(self.line(), markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_task(description: str, total: int | None):
    """Yield an `advance(n=1, failed=False)` callable bound to a fresh progress display."""
    if not console.is_terminal:
        with _PlainProgress(description, total, float(os.environ.get("MGA_PROGRESS_EVERY", PLAIN_EVERY_S))) as plain:

            def advance_plain(n: int = 1, failed: bool = False) -> None:
                plain.done += n
                plain.failed += n if failed else 0

            yield advance_plain
        return
    with new_progress() as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int = 1, failed: bool = False) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            progress.update(task, rate=f"{speed:6.1f} it/s" if speed else "")

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress display (items/s, ETA)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_task(description, total) as advance:
        for item in items:
            yield item
            advance()
