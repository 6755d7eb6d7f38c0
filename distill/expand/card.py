"""The dataset card (README.md with a YAML header) beside an expanded corpus, and the merge of job-array shards.

The YAML header follows the Hugging Face Hub's dataset-card format: `configs` names the data files, so
`datasets.load_dataset(folder)` and the Hub's viewer find them; the body records what a training job's
owner needs to trust the data: source corpus, tool models, prompt variant, cleaning thresholds, counts,
tokens in and out, and the expansion factor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.core.markdown import markdown_table
from mga.distill.expand.output import DATA_DIR

# statistics that add up across shards
SUMMED = ("documents", "chunks", "pairs_ok", "pairs_failed", "rewrites", "rewrites_missing", "expanded", "rejected",
          "cleaned_rows", "tokens_in", "tokens_out")
# settings every shard of one expansion must share
SHARED = ("corpus", "pairs_model", "rewrite_model", "pairs_backend", "rewrite_backend", "language", "variant",
          "num_pairs", "min_keyword_coverage", "output_format", "num_shards", "token_counter", "quality_thresholds")


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "n>1B"


def data_files(stats: dict[str, Any], prefix: str = "") -> str:
    """The glob of the kept rows, relative to the card's folder."""
    return prefix + (f"{DATA_DIR}/*.parquet" if stats["output_format"] == "parquet" else "expanded.jsonl")


def quality_figures(quality: dict[str, float]) -> list[tuple[str, str]]:
    """The card's quality section: (figure, value and a plain sentence on what it means), from the summed
    monitor figures of `stats['quality']` (mga.judge.monitors)."""
    n = quality.get("measured", 0)
    if not n:
        return []
    def share(key: str) -> float:
        return 100 * quality.get(key, 0) / n

    d = quality.get("with_diversity", 0)
    rows = [
        ("copy rate", f"{quality['copy_rate_sum'] / n:.3f} on average: the share of a rewrite's word 8-grams found "
                      f"verbatim in its source (0 = all new wording, 1 = a copy); {share('high_copy_rate'):.1f}% "
                      "of rewrites were dropped for copying too much"),
        ("length ratio", f"{quality['length_ratio_sum'] / n:.2f} on average: rewrite words per source word"),
        ("language kept", f"{share('language_kept'):.1f}% of rewrites are in their source's language"),
        ("near-duplicates", f"{share('near_duplicate'):.1f}% of rewrites nearly repeat an earlier one (MinHash "
                            "Jaccard at or above the threshold) and were dropped"),
        ("contamination", f"{quality.get('contaminated', 0):,.0f} rewrites share a word 13-gram with the named "
                          "benchmarks and were dropped"),
    ]
    if d:
        rows.insert(2, ("diversity", f"{quality['diversity_sum'] / d:.3f} on average: 1 - the mean MiniLM cosine "
                                     "similarity between a document's rewrites (0 = the same text five times); "
                                     f"distinct-2 {quality['distinct_2_sum'] / d:.3f} (share of word pairs not "
                                     "repeated across a document's rewrites)"))
    return rows


def card_text(stats: dict[str, Any], files: str) -> str:
    header = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": files}]}],
        "language": [stats["language"]],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "mga", "pretraining", "mga-toolkit"],
        "size_categories": [_size_category(stats["expanded"])],
        "pretty_name": f"MGA expansion of {Path(stats['corpus']).name}",
    }
    rows = [
        ("source corpus", f"`{stats['corpus']}`"),
        ("tool models", f"SLM-1 (pairs) `{stats['pairs_model']}` ({stats['pairs_backend']}); "
                        f"SLM-2 (rewrite) `{stats['rewrite_model']}` ({stats['rewrite_backend']})"),
        ("prompt variant", f"{stats['variant']} ({stats['language']}), {stats['num_pairs']} pairs per chunk"),
        ("cleaning", f"boilerplate lines of `data/prompts/{stats['language']}/boilerplate.yaml` removed; rewrites "
                     f"keeping < {stats['min_keyword_coverage']} of the original's keywords dropped"),
        ("documents / chunks", f"{stats['documents']:,} / {stats['chunks']:,}"),
        ("rows kept / rejected", f"{stats['expanded']:,} / {stats['rejected']:,}"),
        ("rejected by reason", ", ".join(f"{k}: {v:,}" for k, v in stats["rejected_by_reason"].items()) or "none"),
        (f"tokens in / out ({stats['token_counter']})", f"{stats['tokens_in']:,} / {stats['tokens_out']:,}"),
        ("expansion factor (paper: 3.9x)", f"{stats['expansion_factor']:.2f}x"),
        ("shards", f"{stats['shards_merged']} merged" if "shards_merged" in stats
                   else f"shard {stats['shard_index']} of {stats['num_shards']}"),
    ]
    loader = "parquet" if stats["output_format"] == "parquet" else "json"
    quality = quality_figures(stats.get("quality") or {})
    limits = ", ".join(f"{k}: {v}" for k, v in (stats.get("quality_thresholds") or {}).items())
    quality_md = ("## Quality\n\nMeasured on the generated rewrites, kept and dropped (mga.judge.monitors; "
                  f"what each figure means and its default in docs/expand.md); per-row figures are in "
                  f"`meta.monitors`. Thresholds: {limits or 'defaults'}.\n\n"
                  + markdown_table(["figure", "value"], quality) + "\n\n") if quality else ""
    return (
        "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n"
        f"# {header['pretty_name']}\n\n"
        "Rewrites of a pretraining corpus for (genre, audience) pairs, made by `mga expand` (mga-toolkit) "
        "following MGA (arXiv 2502.04235). Rows follow the MGACorpus schema: `meta.{docid, chunk_id, source, "
        "split, meta_extra, genre, audience, pair_id, raw_text}` and `content_split` (the rewrite), plus "
        "`variant`, `model`, `finish_reason` and `cleaning`.\n\n"
        + markdown_table(["", "value"], rows) + "\n\n"
        + quality_md +
        "## Loading\n\n```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("{loader}", data_files="<this folder>/{files}", split="train")\n```\n'
    )


def write_card(folder: Path, stats: dict[str, Any], files: str | None = None) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(card_text(stats, files or data_files(stats)), encoding="utf-8")
    return path


_SHARD = re.compile(r"shard-(\d+)-of-(\d+)")


def merge_shards(out_dir: Path) -> dict[str, Any]:
    """Add up the statistics of every `shard-i-of-n` folder into out_dir/stats.json and write the card."""
    out_dir = Path(out_dir)
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for path in sorted(out_dir.glob("shard-*-of-*/stats.json")):
        match = _SHARD.fullmatch(path.parent.name)
        if match:
            found.setdefault(int(match[2]), {})[path.parent.name] = json.loads(path.read_text())
    if len(found) != 1:
        what = "no finished shard (shard-i-of-n/stats.json)" if not found else f"shards of {sorted(found)} runs"
        raise MgaError(f"{out_dir}: {what}; --merge needs the finished shards of one job array")
    (num_shards, shards), = found.items()
    missing = sorted(set(range(num_shards)) - {s["shard_index"] for s in shards.values()})
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise MgaError(f"{out_dir}: {len(missing)} of {num_shards} shards not finished yet (index {shown}); "
                       "run them (they resume) and merge again")
    first = next(iter(shards.values()))
    for name, stats in shards.items():
        differ = [k for k in SHARED if stats.get(k) != first.get(k)]
        if differ:
            raise MgaError(f"{out_dir / name}: ran with other settings than the other shards ({', '.join(differ)})")
    merged: dict[str, Any] = {k: first.get(k) for k in SHARED}
    merged.update({k: sum(s.get(k, 0) for s in shards.values()) for k in SUMMED})
    reasons: dict[str, int] = {}
    for stats in shards.values():
        for reason, n in stats["rejected_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    merged["rejected_by_reason"] = dict(sorted(reasons.items()))
    quality: dict[str, float] = {}
    for stats in shards.values():
        for k, v in (stats.get("quality") or {}).items():
            quality[k] = quality.get(k, 0) + v
    merged["quality"] = dict(sorted(quality.items()))
    merged["expansion_factor"] = round(merged["tokens_out"] / merged["tokens_in"], 4) if merged["tokens_in"] else 0.0
    merged["shards_merged"] = num_shards
    merged["output_files"] = [f"{name}/{f}" for name, s in sorted(shards.items()) for f in s["output_files"]]
    write_json(out_dir / "stats.json", merged)
    write_card(out_dir, merged, data_files(merged, prefix=f"shard-*-of-{num_shards}/"))
    return merged
