"""The embedding map (the paper's Figure 5): t-SNE of MiniLM embeddings of the originals and of each
variant's rewrites, one PNG. Base rewrites should overlap and extend the originals, Strict stay close,
Relaxed drift away."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.core.plotting import new_figure, save_figure
from mga.distill.core.schema import OK


def _variant(row: dict[str, Any]) -> str:
    return row.get("variant") or "base"


def _groups(rows: list[dict[str, Any]], group: Callable[[dict[str, Any]], str]) -> dict[str, list[str]]:
    originals: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for row in rows:
        meta = row["meta"]
        originals.setdefault(f"{meta['docid']}#{meta.get('chunk_id', 0)}", meta["raw_text"])
        if row.get("status", OK) == OK and (row.get("content_split") or "").strip():
            groups.setdefault(f"rewrite: {group(row)}", []).append(row["content_split"])
    return {"original": list(originals.values()), **groups}


def embedding_map(
    rows: list[dict[str, Any]],
    out_png: str | Path,
    *,
    max_points: int = 3000,
    seed: int = 0,
    group: Callable[[dict[str, Any]], str] | None = None,
) -> Path:
    """t-SNE (scikit-learn) of the distinct originals and of the rewrites grouped by `group(row)`
    (default: the prompt variant)."""
    import numpy as np
    from mga.judge.heuristic import embed
    from sklearn.manifold import TSNE

    groups = _groups(rows, group or _variant)
    n_total = sum(len(v) for v in groups.values())
    rng = random.Random(seed)
    if n_total > max_points:  # the same share of every group, so the picture keeps its proportions
        groups = {k: rng.sample(v, max(1, round(len(v) * max_points / n_total))) for k, v in groups.items()}
    labels = [k for k, v in groups.items() for _ in v]
    texts = [t for v in groups.values() for t in v]
    if len(texts) < 5:
        raise MgaError(f"embedding map: need at least 5 texts, got {len(texts)}")
    vectors = embed(texts)
    perplexity = float(min(30.0, max(2.0, (len(texts) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(np.asarray(vectors))

    fig, ax = new_figure((7.5, 6.0))
    for name in groups:
        mask = np.array([label == name for label in labels])
        ax.scatter(points[mask, 0], points[mask, 1], s=36 if name == "original" else 16, alpha=0.75,
                   label=f"{name} ({int(mask.sum())})", marker="D" if name == "original" else "o")
    ax.set_title("t-SNE of MiniLM embeddings: originals vs rewrites")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=1.5)
    return save_figure(fig, out_png)
