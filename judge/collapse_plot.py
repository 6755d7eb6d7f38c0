"""Figure-7-style charts of the loss analysis: loss_diff along the sequence, and where first anomalies fall."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.plotting import new_figure, save_figure

MAX_CURVES = 6


def _smoothed(values: list[float], w: int) -> list[float]:
    """Trailing moving average over w tokens (the window the anomaly rule uses)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - w] if i >= w else 0.0)
        out.append(total / min(i + 1, w))
    return out


def plot_loss_diff(docs: list[dict[str, Any]], out_png: Path, k: float) -> Path:
    """loss_diff against position (% of the sequence) for a few documents, each with its first anomaly marked.

    Documents with an anomaly come first (earliest first), then the rest, up to `MAX_CURVES`."""
    flagged = sorted((d for d in docs if d["first_anomaly_index"] >= 0), key=lambda d: d["first_anomaly_pct"])
    shown = (flagged + [d for d in docs if d["first_anomaly_index"] < 0])[:MAX_CURVES]
    fig, _ = new_figure((8.0, 1.6 * len(shown) + 0.6))
    fig.clf()  # one panel per document
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, doc in zip(axes, shown):
        diff, n = doc["loss_diff"], len(doc["loss_diff"])
        xs = [100.0 * i / n for i in range(n)]
        ax.plot(xs, diff, lw=0.5, color="0.6", label="loss_diff")
        ax.plot(xs, _smoothed(diff, doc["window"]), lw=1.2, color="C0", label=f"mean over w={doc['window']}")
        ax.axhline(doc["threshold"], color="C3", lw=0.8, ls="--", label=f"|mu| + {k:g} sigma")
        ax.axhline(0.0, color="0.3", lw=0.5)
        if doc["first_anomaly_index"] >= 0:
            ax.axvspan(doc["first_anomaly_pct"], 100.0 * (doc["first_anomaly_index"] + doc["window"]) / n,
                       color="C3", alpha=0.25, label=f"first anomaly {doc['first_anomaly_pct']:.1f}%")
        ax.set_ylabel("nats", fontsize=7)
        ax.set_title(f"{doc['id']} ({n} tokens)", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right", ncol=4)
    axes[-1].set_xlabel("position in the document (% of its tokens)")
    fig.suptitle("loss_diff = loss(synthetic-data model) - loss(real-data model) per token", fontsize=9)
    return save_figure(fig, out_png)


def plot_first_positions(docs: list[dict[str, Any]], out_png: Path, k: float) -> Path:
    """Histogram of first-anomaly positions (% of the sequence), with the share of documents without one."""
    firsts = [d["first_anomaly_pct"] for d in docs if d["first_anomaly_index"] >= 0]
    fig, ax = new_figure((6.0, 3.2))
    ax.hist(firsts, bins=[5 * i for i in range(21)], color="C3", alpha=0.8, edgecolor="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("first anomaly position (% of the document)")
    ax.set_ylabel("documents")
    none = len(docs) - len(firsts)
    ax.set_title(f"first anomaly (k={k:g}): {len(firsts)} of {len(docs)} documents; {none} without", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_png)
