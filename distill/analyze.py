"""Token-level loss analysis (the paper's Figure 7): where does a model trained with synthetic data depart
from one trained on real data?

Per document, both models score every token (the loss of token i given tokens < i); the difference
loss_diff_i = loss_B_i - loss_A_i (B: the synthetic-data model, A: the real-data model) is what the paper plots.
The first anomaly (PAPER.md): with w = max(5% of the sequence length, 1) tokens (5% rounded down), the first
window start p whose mean loss_diff over [p, p + w) exceeds |mu| + k * sigma, mu and sigma being the mean and
(population) standard deviation of the document's loss_diff; reported as 100 * p / length, -1 when no window
does. The paper does not publish k; the default is 2 and every output states the k used. Its two charts (loss_diff
along the sequence, where first anomalies fall) are drawn here too: `mga analyze loss` and the run's
`analyze-loss` stage both call `analyze_loss`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mga.distill.core.console import console, track
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json, write_rows
from mga.distill.core.plotting import new_figure, save_figure

DEFAULT_K = 2.0
MAX_CURVES = 6  # documents drawn in the loss_diff figure
WINDOW_SHARE = 0.05


def window_size(length: int) -> int:
    """w = max(5% of the length, 1) tokens, 5% rounded down."""
    return max(int(length * WINDOW_SHARE), 1)


def loss_diff(real: Sequence[float], synthetic: Sequence[float]) -> list[float]:
    """loss_diff_i = synthetic_i - real_i over the same tokens."""
    if len(real) != len(synthetic):
        raise MgaError(f"loss sequences differ in length ({len(real)} vs {len(synthetic)}): not the same tokens")
    return [s - r for r, s in zip(real, synthetic)]


def first_anomaly(diff: Sequence[float], k: float = DEFAULT_K) -> dict[str, Any]:
    """The first-anomaly rule on one document's loss_diff: index, percent (-1 if none), window and threshold."""
    n = len(diff)
    if n == 0:
        return {"index": -1, "percent": -1.0, "window": 0, "threshold": None}
    w = window_size(n)
    mu = statistics.fmean(diff)
    sigma = statistics.pstdev(diff)
    threshold = abs(mu) + k * sigma
    total = sum(diff[:w])
    for p in range(n - w + 1):
        if p:
            total += diff[p + w - 1] - diff[p - 1]
        if total / w > threshold + 1e-12 * max(1.0, abs(threshold)):  # float noise never makes an anomaly
            return {"index": p, "percent": round(100.0 * p / n, 4), "window": w, "threshold": threshold}
    return {"index": -1, "percent": -1.0, "window": w, "threshold": threshold}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"q1": None, "median": None, "q3": None}
    if len(values) == 1:
        return {"q1": values[0], "median": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"q1": round(q1, 4), "median": round(median, 4), "q3": round(q3, 4)}


def summarize_documents(docs: list[dict[str, Any]], k: float) -> dict[str, Any]:
    """Share of documents with an anomaly, median and quartiles of the first position, mean loss_diff."""
    firsts = sorted(d["first_anomaly_pct"] for d in docs if d["first_anomaly_pct"] >= 0)
    tokens = sum(d["tokens"] for d in docs)
    return {
        "k": k,
        "rule": "first window start p (w = max(floor(5% of length), 1) tokens) whose mean loss_diff exceeds "
                f"|mu| + {k:g} * sigma of the document's loss_diff; position = 100 * p / length, -1 if none",
        "documents": len(docs),
        "tokens": tokens,
        "with_anomaly": len(firsts),
        "anomaly_share": round(len(firsts) / len(docs), 4) if docs else 0.0,
        "first_position_pct": _quantiles(firsts),
        "mean_loss_diff_per_token": round(sum(d["mean_loss_diff"] * d["tokens"] for d in docs) / tokens, 4)
        if tokens else None,
        "mean_loss_diff_per_document": round(statistics.fmean(d["mean_loss_diff"] for d in docs), 4) if docs else None,
    }


def check_same_tokenizer(tok_a, tok_b, name_a: str, name_b: str) -> None:
    """Token-level differences need the same tokens: refuse two tokenizers that disagree on the vocabulary."""
    vocab_a, vocab_b = tok_a.get_vocab(), tok_b.get_vocab()
    if vocab_a != vocab_b:
        differ = len(set(vocab_a.items()) ^ set(vocab_b.items()))
        raise MgaError(f"{name_a} and {name_b} do not share a tokenizer (vocabularies of {len(vocab_a):,} and "
                       f"{len(vocab_b):,} tokens, {differ:,} entries differ): token-level losses can only be "
                       "compared over the same tokens; train both models from the same base tokenizer")


def _load(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype="auto")
    except (OSError, ValueError) as e:
        raise MgaError(f"cannot load a causal LM from '{path}': {str(e).splitlines()[0]}") from None
    model.eval()
    return tokenizer, model


def token_losses(model, ids: list[int]) -> list[float]:
    """Negative log-likelihood (nats) of tokens 1..n-1 of `ids`, each given the tokens before it."""
    import torch

    with torch.no_grad():
        x = torch.tensor([ids], device=model.device)
        logits = model(input_ids=x).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none").tolist()


def _documents(texts: Path) -> list[tuple[str, str]]:
    docs = []
    for i, row in enumerate(read_rows(texts)):
        text = row.get("text")
        if isinstance(text, str) and text.strip():
            meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
            docs.append((str(row.get("id") or meta.get("docid") or i), text))
    if not docs:
        raise MgaError(f"{texts}: no rows with a non-empty 'text'")
    return docs


def analyze_loss(
    real_model: str | Path,
    synthetic_model: str | Path,
    texts: str | Path,
    out_dir: str | Path,
    *,
    k: float = DEFAULT_K,
    max_length: int = 2048,
    min_tokens: int = 20,
    plots: bool = True,
) -> dict[str, Any]:
    """Score `texts` with both models; write documents.jsonl, summary.json and Figure-7-style PNGs to `out_dir`.

    Documents are cut to their first `max_length` tokens; documents under `min_tokens` tokens are skipped
    (counted in the summary). Returns the summary."""
    if k < 0:
        raise MgaError(f"--k must be non-negative, got {k}")
    out_dir = Path(out_dir)
    docs = _documents(Path(texts))
    tok_a, model_a = _load(real_model)
    tok_b, model_b = _load(synthetic_model)
    check_same_tokenizer(tok_a, tok_b, str(real_model), str(synthetic_model))
    limit = min(max_length, *(getattr(m.config, "max_position_embeddings", max_length) for m in (model_a, model_b)))
    rows, skipped = [], 0
    for doc_id, text in track(docs, "token losses"):
        full_ids = tok_a(text, add_special_tokens=False)["input_ids"]
        ids = full_ids[:limit]
        if len(ids) < min_tokens:
            skipped += 1
            continue
        real, synthetic = token_losses(model_a, ids), token_losses(model_b, ids)
        diff = loss_diff(real, synthetic)
        anomaly = first_anomaly(diff, k)
        rows.append({
            "id": doc_id, "tokens": len(diff), "truncated": len(full_ids) > limit,
            "mean_loss_real": round(statistics.fmean(real), 4), "mean_loss_synthetic": round(statistics.fmean(synthetic), 4),
            "mean_loss_diff": round(statistics.fmean(diff), 4), "k": k, "window": anomaly["window"],
            "threshold": round(anomaly["threshold"], 4), "first_anomaly_index": anomaly["index"],
            "first_anomaly_pct": anomaly["percent"], "loss_diff": [round(v, 4) for v in diff],
        })
    if not rows:
        raise MgaError(f"{texts}: no document has {min_tokens} tokens or more")
    summary = {**summarize_documents(rows, k), "skipped_short": skipped, "max_length": limit,
               "real_model": str(real_model), "synthetic_model": str(synthetic_model), "texts": str(texts)}
    write_rows(out_dir / "documents.jsonl", rows)
    if plots:
        summary["plots"] = [str(plot_loss_diff(rows, out_dir / "loss_diff.png", k)),
                            str(plot_first_positions(rows, out_dir / "first_anomaly.png", k))]
    write_json(out_dir / "summary.json", summary)
    console.print(summary_line(summary), markup=False, soft_wrap=True)
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    q = summary["first_position_pct"]
    where = "no anomaly" if q["median"] is None else f"first position median {q['median']:.1f}% (IQR {q['q1']:.1f}-{q['q3']:.1f}%)"
    return (f"loss analysis (k={summary['k']:g}): {summary['with_anomaly']}/{summary['documents']} documents with an "
            f"anomaly ({100 * summary['anomaly_share']:.1f}%), {where}, mean loss_diff "
            f"{summary['mean_loss_diff_per_token']:+.4f} nats/token")


# -- the Figure-7-style charts: loss_diff along the sequence, and where first anomalies fall --
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
