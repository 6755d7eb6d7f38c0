"""Headless matplotlib figures for every PNG the toolkit writes (loss curves, score charts, embedding map)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float], dpi: int = 110) -> tuple[Any, Any]:
    """(figure, axes) on the Agg backend: no display is needed, e.g. on a cluster node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=dpi)


def save_figure(fig: Any, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the PNG; `metadata` (PNG text keys: Title, Description...) says what it shows to a program."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, metadata=metadata)
    plt.close(fig)
    return path
