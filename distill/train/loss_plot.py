"""The loss curve of a training run as a PNG, from the trainer's `log_history`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.plotting import new_figure, save_figure


def plot_loss(log_history: list[dict[str, Any]], path: str | Path, title: str = "SFT loss") -> Path:
    """Training loss per logged step, and evaluation loss where it was measured."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    fig, ax = new_figure((6, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train", marker="." if len(train) < 50 else None)
    if evals:
        ax.plot(*zip(*evals, strict=True), label="eval", marker="o")
    if not train and not evals:
        ax.text(0.5, 0.5, "no loss logged (raise logging frequency)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend()
    return save_figure(fig, path)
