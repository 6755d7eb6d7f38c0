"""The SLM-versus-LLM report: the paper's Table 1 (and Table 2 for prompt variants) from judged files.

The shares and their conventions are defined once in `mga.judge.scores`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mga.distill.core.config import VARIANTS
from mga.distill.core.errors import MgaError
from mga.distill.core.io import numbered_rows, write_json
from mga.distill.core.markdown import markdown_table
from mga.distill.core.schema import chunk_key, is_control, rewrite_key, verdict_problem
from mga.judge.comparison import (
    add_diffs,
    check_item_sets,
    failure_flags,
    interval_notes,
)
from mga.judge.config import FilterConfig
from mga.judge.health import health_section, judge_health
from mga.judge.monitors import copied_spans, measured_rows, quality_summary, words
from mga.judge.report_tables import (
    QUALITY_HEADER,
    TABLE1_HEADER,
    TABLE2_HEADER,
    copy_rate_chart,
    fmt_int,
    quality_rows,
    score_chart,
    table1_rows,
    table2_rows,
)
from mga.judge.scores import summarize

QUALITY_TITLE = "Corpus quality per model and prompt variant"
QUALITY_NOTE = (
    "Measured against each rewrite's source (mga.judge.monitors; docs/expand.md): copy rate = share of the rewrite's "
    "word 8-grams found in the source; diversity = 1 - mean MiniLM cosine between a document's rewrites; distinct-2 "
    "= distinct word pairs / all word pairs over a document's rewrites; language kept = rewrites in their source's "
    "language; near-duplicates = rewrites whose MinHash Jaccard with an earlier one of the line reaches 0.8. The "
    "paper's story: Strict copies most, Relaxed drifts most (lowest copy rate, highest diversity)."
)
FAMILY_ROWS = 20  # (genre, audience) families shown, most frequent first
SAMPLE_DOCUMENTS = 20  # documents on the samples page, so that it stays light whatever the run's size


def quality_section(groups: Sequence[tuple[str, list[dict[str, Any]]]]) -> tuple[str, dict[str, Any]]:
    """The quality table per line (model, or model and variant as in Table 2) and per (genre, audience) family,
    as Markdown and as figures (`quality_summary`'s, private keys included)."""
    per_line = {label: quality_summary(rows) for label, rows in groups}
    families: dict[str, list[dict[str, Any]]] = {}
    for _, rows in groups:
        for row in rows:
            meta = row.get("meta") or {}
            families.setdefault(f"{meta.get('genre', '?')} / {meta.get('audience', '?')}", []).append(row)
    top = sorted(families, key=lambda k: -len(families[k]))[:FAMILY_ROWS]
    per_family = {name: quality_summary(families[name], per_document=False) for name in top}
    family_header = ["(genre / audience) family", *QUALITY_HEADER[1:]]
    body = (QUALITY_NOTE + "\n\n" + markdown_table(QUALITY_HEADER, quality_rows(per_line))
            + f"\n\nPer (genre, audience) family (the {len(top)} most frequent of {len(families)}, all lines together; "
            "diversity and distinct-2 compare a document's rewrites, which belong to different families, so they "
            "stay blank here):\n\n"
            + markdown_table(family_header, quality_rows(per_family)))
    return body, {"variants": per_line, "families": per_family}


def _rank(key: str) -> str:
    """A document's place in the sample: a hash of its key, so the same documents come back every time."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def rewrite_flags(row: dict[str, Any], quality: dict[str, Any], cfg: FilterConfig) -> list[str]:
    """What a measured rewrite would be flagged for, named as the filters' reasons: the monitors `cfg` turns on,
    at its thresholds (near-duplicates and diversity as its line's `quality_summary` found them), its judge
    score, and the row's own filter reason when it went through the filters."""
    figures = row["meta"]["monitors"]
    flags = []
    if figures["copy_rate"] > cfg.max_copy_rate:
        flags.append("high_copy_rate")
    if cfg.reject_language_change and None not in (figures["language"], figures["source_language"]) \
            and figures["language"] != figures["source_language"]:
        flags.append("language_changed")
    diversity = quality.get("_documents", {}).get(chunk_key(row), {}).get("diversity")
    if diversity is not None and diversity < cfg.min_diversity:
        flags.append("low_diversity")
    if cfg.near_duplicate_threshold is not None and rewrite_key(row) in quality.get("_near_duplicate_of", {}):
        flags.append("near_duplicate")
    if isinstance(row.get("judge"), dict):
        score = row["judge"].get("score")
        if score is None or score < cfg.min_score:
            flags.append("unscored" if score is None else f"score_below_{cfg.min_score}")
    if reason := (row.get("filter") or {}).get("reason"):
        flags.append(reason)
    return list(dict.fromkeys(flags))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _sample_rewrite(label: str, row: dict[str, Any], flags: list[str], quality: dict[str, Any]) -> dict[str, Any]:
    meta, figures, verdict = row["meta"], row["meta"]["monitors"], row.get("judge") or {}
    document = quality.get("_documents", {}).get(chunk_key(row), {})
    reasons = [("judge analysis", verdict.get("analysis")), ("judge: why unscored", verdict.get("reason")),
               ("filter", ": ".join(str(x) for x in ((row.get("filter") or {}).get("reason"),
                                                     (row.get("filter") or {}).get("detail")) if x)),
               ("near-duplicate of", quality.get("_near_duplicate_of", {}).get(rewrite_key(row)))]
    return {
        "line": label, "genre": meta.get("genre") or "?", "audience": meta.get("audience") or "?",
        "score": verdict.get("score") if verdict.get("score") is not None else ("unscored" if verdict else "not judged"),
        "figures": (f"copy rate {figures['copy_rate']:.2f} · longest copy {figures['longest_copy']['words']} words · "
                    f"length ratio {figures['length_ratio']:.2f} · language {figures['source_language']} → "
                    f"{figures['language']} · document diversity {_fmt(document.get('diversity'))} · distinct-2 "
                    f"{_fmt(document.get('distinct_2'))}"),
        "flags": flags, "reasons": [(name, value) for name, value in reasons if value],
        "text": row["content_split"], "copied": copied_spans(meta["raw_text"], row["content_split"]),
    }


def sample_documents(lines: Sequence[tuple[str, list[dict[str, Any]]]], quality: dict[str, dict[str, Any]],
                     cfg: FilterConfig, limit: int = SAMPLE_DOCUMENTS) -> dict[str, Any]:
    """The samples page's content: at most `limit` documents (chunks), each with its source and its measured
    rewrites of every line. Documents are taken in the order of a hash of their key (the same ones every
    time); those with a flagged rewrite take up to half of the places, so problems are seen first."""
    flagged: dict[str, list[tuple[str, dict[str, Any], list[str]]]] = {}
    for label, rows in lines:
        for row in rows:
            if row["meta"].get("raw_text"):
                flagged.setdefault(chunk_key(row), []).append((label, row, rewrite_flags(row, quality[label], cfg)))
    order = sorted(flagged, key=_rank)
    chosen = [key for key in order if any(flags for _, _, flags in flagged[key])][: limit // 2]
    first = set(chosen)
    chosen += [key for key in order if key not in first][: limit - len(chosen)]
    chosen.sort(key=_rank)
    documents = [{"key": key, "source": flagged[key][0][1]["meta"]["raw_text"],
                  "words": len(words(flagged[key][0][1]["meta"]["raw_text"])),
                  "rewrites": [_sample_rewrite(label, row, flags, quality[label]) for label, row, flags in flagged[key]]}
                 for key in chosen]
    near = "off" if cfg.near_duplicate_threshold is None else "MinHash Jaccard 0.8 within the line"
    return {
        "shown": len(documents), "total": len(flagged), "documents": documents,
        "lines": [label for label, rows in lines if rows],
        "flags": sorted({flag for doc in documents for r in doc["rewrites"] for flag in r["flags"]}),
        "rule": (f"at most {limit}, taken in the order of a hash of their key (the same documents every time), "
                 f"documents with a flagged rewrite first for up to {limit // 2} of the places"),
        "thresholds": (f"max_copy_rate {cfg.max_copy_rate:g}, min_diversity {cfg.min_diversity:g}, near-duplicates "
                       f"{near}, language change {'on' if cfg.reject_language_change else 'off'}, min_score "
                       f"{cfg.min_score}"),
    }


HEURISTIC_NOTE = (
    "Scores come from the offline heuristic judge (MiniLM similarity + keyword coverage), not from an LLM "
    "judge under Limited Consistency: they show that the pipeline works, not how a model compares in the paper's terms."
)


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.startswith("_")}


def judges_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Which judge produced the verdicts of these rows: `backend (model)` labels, most frequent first."""
    seen: dict[str, int] = {}
    for row in rows:
        verdict = row.get("judge") or {}
        if verdict.get("backend"):
            label = f"{verdict['backend']} ({verdict.get('model') or '?'})"
            seen[label] = seen.get(label, 0) + 1
    return sorted(seen, key=seen.get, reverse=True)


def _variant_groups(models: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups = []
    for name, rows in models.items():
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_variant.setdefault(row.get("variant") or "base", []).append(row)
        order = sorted(by_variant, key=lambda v: (VARIANTS.index(v) if v in VARIANTS else 99, v))
        for variant in order:
            groups.append((name if len(by_variant) == 1 else f"{name} / {variant}", by_variant[variant]))
    return groups


def _load(models: dict[str, Path | str | list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per model; a model without rows, or whose rows carry no judge verdict, is a user error."""
    if not models:
        raise MgaError("report: give at least one judged file")
    loaded = {}
    for name, source in models.items():
        where = str(source) if isinstance(source, (str, Path)) else f"model '{name}'"
        numbered = numbered_rows(source) if isinstance(source, (str, Path)) else (
            (f"model '{name}', row {i}", row) for i, row in enumerate(source, 1))
        loaded[name] = []
        for at, row in numbered:
            if problem := verdict_problem(row):
                raise MgaError(f"report: {at}: {problem}; fix the row or judge the file again (mga judge)")
            loaded[name].append(row)
        if not loaded[name]:
            raise MgaError(f"report: {where} has no rows")
        if not any(isinstance(row.get("judge"), dict) for row in loaded[name]):
            raise MgaError(f"report: {where} has no judge verdicts (was it judged? run `mga judge` on it first)")
    return loaded


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_report(
    models: dict[str, Path | str | list[dict[str, Any]]],
    out_dir: str | Path,
    *,
    judge_label: str | None = None,
    reference_model: str | None = None,
    notes: Sequence[str] = (),
    images: Sequence[str | Path] = (),
    sections: Sequence[tuple[str, str]] = (),
    embed_rows: list[dict[str, Any]] | None = None,
    embed: bool = False,
    table2: bool | None = None,
    variants: dict[str, Path | str | list[dict[str, Any]]] | None = None,
    title: str = "MGA tool models vs teacher",
    judge_controls: dict[str, dict[str, Any] | None] | None = None,
    target_gap: float | None = 1.0,
    max_failed_share: float = 0.10,
    allow_unequal: bool = False,
    reference_scores: dict[str, int] | None = None,
    filter_cfg: FilterConfig | None = None,
) -> Path:
    """Write report.md, report.html (self-contained), report.json and PNG charts; returns report.md.

    `reference_model` (default: "teacher" when present, else the first model) is what Diff is measured
    against. Table 2 is added when rows carry several variants or when `table2` is True (one line per model,
    or per model and variant); `variants` gives its lines explicitly (label -> judged rows). `images` and
    `sections` (title, markdown text) add the pipeline's other results; `embed_rows` (or `embed`: the
    models' own rows, grouped by model and variant) draws the t-SNE map. The report leads with the judge's
    control figures: `judge_controls` (judged stage -> `control_verdict`), by default those of each model's
    rows; control rows themselves enter no table, chart or map.

    Every model and Table 2 line must be judged on the reference model's eval items (else `MgaError`,
    unless `allow_unequal`, which adds a note). Rates carry Wilson 95% intervals, Diff a paired bootstrap
    95% interval; a note says when that interval is wider than `target_gap` points. Models with more than
    `max_failed_share` unscored rows are flagged at the top. The "Judge health" section shows unscored
    shares, parse re-asks and, with `reference_scores` (`reference_key` -> hand score), agreement with them.

    Rows measured by the quality monitors (with their source or `meta.monitors`) add the quality table per
    line and per (genre, audience) family, the copy-rate chart and the samples page of report.html, whose
    flags use `filter_cfg`'s thresholds (default: `FilterConfig()`'s)."""
    from mga.judge.controls import (
        CONTROLS_TITLE,
        control_verdict,
        controls_markdown,
        failed_stages,
    )
    from mga.judge.report_html import render_html

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = _load(models)
    if judge_controls is None:
        judge_controls = {name: control_verdict(rows) for name, rows in loaded.items()}
    loaded = {name: [row for row in rows if not is_control(row)] for name, rows in loaded.items()}
    if reference_model is None:
        reference_model = "teacher" if "teacher" in loaded else next(iter(loaded))
    if reference_model not in loaded:
        raise MgaError(f"report: reference model '{reference_model}' is not among {', '.join(loaded)}")

    summaries = {name: summarize(rows) for name, rows in loaded.items()}
    add_diffs(summaries, loaded, reference_model)
    for name, s in summaries.items():
        s["judges"] = judges_of(loaded[name])
    groups = _variant_groups(loaded)
    if variants:
        groups = [(label, [row for row in rows if not is_control(row)]) for label, rows in _load(variants).items()]
    show_table2 = bool(variants) or (table2 if table2 is not None else len(groups) > len(loaded))
    variant_summaries = {label: summarize(rows) for label, rows in groups} if show_table2 else {}
    lines = dict(groups) if show_table2 else {}
    unequal_notes = check_item_sets(loaded, reference_model, lines, allow_unequal=allow_unequal)
    compared = {**loaded, **lines}
    flags = failure_flags(summaries, max_failed_share) + failure_flags(variant_summaries, max_failed_share)
    flags = list(dict.fromkeys(flags))
    health = judge_health(compared, reference_scores)

    all_judges = sorted({j for s in summaries.values() for j in s["judges"]})
    if judge_label is None:
        judge_label = ", ".join(all_judges) or "unknown judge"
    notes = [*flags, *unequal_notes, *notes, *interval_notes(summaries, target_gap)]
    if failed := failed_stages(judge_controls):
        notes.insert(0, f"The judge FAILED its controls in: {', '.join(failed)}. It cannot be shown to tell a faithful "
                        "rewrite from an unrelated text, so the scores below are not evidence (see Judge health).")
    if any(j.startswith("heuristic") for j in all_judges) and not any("heuristic" in n.lower() for n in notes):
        notes.insert(len(flags), HEURISTIC_NOTE)
    notes.append("Total includes unscored outputs, which count as failures (the paper's convention); rates are % "
                 "of Total with 95% Wilson intervals; Diff is in percentage points against the reference model, with "
                 "a 95% paired bootstrap interval over the items both models answered.")
    sections = [("Judge health", health_section(health)), *sections]
    cfg = filter_cfg or FilterConfig()
    measured = [(label, measured_rows(rows)) for label, rows in groups]
    quality: dict[str, Any] = {}
    samples = None
    if any(rows for _, rows in measured):
        quality_body, quality = quality_section(measured)
        sections.insert(0, (QUALITY_TITLE, quality_body))
        samples = sample_documents(measured, quality["variants"], cfg)

    charts = [score_chart(summaries, out_dir / "scores.png", "Judge scores per model")]
    if show_table2:
        charts.append(score_chart(variant_summaries, out_dir / "variants.png", "Judge scores per prompt variant"))
    if quality:
        rates = {label: [row["meta"]["monitors"]["copy_rate"] for row in rows] for label, rows in measured if rows}
        charts.append(copy_rate_chart(rates, out_dir / "copy_rate.png", cfg.max_copy_rate))
    if embed_rows or embed:
        from mga.judge.embed_map import embedding_map

        if embed_rows:
            charts.append(embedding_map(embed_rows, out_dir / "embedding_map.png"))
        else:
            labelled = [(label, row) for label, rows in groups for row in rows]
            labels = {id(row): label for label, row in labelled}
            charts.append(embedding_map([row for _, row in labelled], out_dir / "embedding_map.png",
                                        group=lambda row: labels[id(row)]))
    pictures = [Path(p) for p in (*charts, *images)]
    for picture in pictures:
        if not picture.is_file():
            raise MgaError(f"report: image not found: {picture}")

    t1 = table1_rows(summaries, reference_model)
    header1 = list(TABLE1_HEADER)
    if len({tuple(s["judges"]) for s in summaries.values()}) > 1:  # models scored by different judges
        header1.append("judge")
        for line, s in zip(t1, summaries.values()):
            line.append(", ".join(s["judges"]) or "none")
    t2 = table2_rows(variant_summaries) if show_table2 else []
    md = [f"# {title}", "", f"**Judge:** {judge_label}", "", f"**Reference model (Diff):** {reference_model}", ""]
    md += [f"> {note}" for note in notes] + [""]
    leading = [(CONTROLS_TITLE, controls_markdown(judge_controls))]
    md += [f"## {CONTROLS_TITLE}", "", leading[0][1], ""]
    md += ["## Table 1: judge scores per model", "", markdown_table(header1, t1), ""]
    if show_table2:
        md += ["## Table 2: prompt variants", "", markdown_table(TABLE2_HEADER, t2), ""]
    for section_title, body in sections:
        md += [f"## {section_title}", "", body.strip(), ""]
    if samples:
        md += ["## Samples", "", f"report.html shows {samples['shown']} of {samples['total']} documents beside their "
               "rewrites, copied spans highlighted, filterable by model / variant and by flag "
               f"({samples['rule']}).", ""]
    md += ["## Charts", ""]
    for picture in pictures:
        target = picture.name if picture.parent.resolve() == out_dir.resolve() else str(picture.resolve())
        md += [f"![{picture.stem}]({target})", ""]
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")

    page = render_html(
        title=title,
        judge_label=judge_label,
        reference_model=reference_model,
        notes=notes,
        table1=(header1, t1),
        table2=(TABLE2_HEADER, t2) if show_table2 else None,
        leading=leading,
        sections=[(t, b) for t, b in sections],
        images=[(p.stem, _data_uri(p)) for p in pictures],
        samples=samples,
    )
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    write_json(out_dir / "report.json", {
        "title": title,
        "judge": judge_label,
        "reference_model": reference_model,
        "notes": notes,
        "judge_controls": judge_controls,
        "flags": flags,
        "target_gap": target_gap,
        "max_failed_share": max_failed_share,
        "equal_item_sets": not unequal_notes,
        "health": health,
        "models": {name: _public(s) for name, s in summaries.items()},
        "variants": {name: _public(s) for name, s in variant_summaries.items()},
        "quality": {part: {label: _public(q) for label, q in lines.items()} for part, lines in quality.items()},
        "samples": None if samples is None else {**{k: samples[k] for k in ("shown", "total", "rule", "thresholds")},
                                                 "documents": [doc["key"] for doc in samples["documents"]]},
        "sections": [{"title": t, "body": b} for t, b in sections],
        "images": [str(p) for p in pictures],
    })
    return out_dir / "report.md"


def loss_analysis_section(summary_json: str | Path) -> tuple[tuple[str, str], list[Path]]:
    """The loss analysis (`mga analyze loss`) as a report section (title, Markdown) and its two charts."""
    import json

    s = json.loads(Path(summary_json).read_text(encoding="utf-8"))
    q = s["first_position_pct"]
    rows = [["documents", fmt_int(s["documents"])], ["with a first anomaly", f"{fmt_int(s['with_anomaly'])} "
            f"({100 * s['anomaly_share']:.1f}%)"],
            ["first position q1 / median / q3", "none" if q["median"] is None else
             f"{q['q1']:.1f}% / {q['median']:.1f}% / {q['q3']:.1f}%"],
            ["mean loss_diff (B - A), nats/token", f"{s['mean_loss_diff_per_token']:+.4f}"]]
    body = (f"A (real data): `{s['real_model']}`; B (synthetic data): `{s['synthetic_model']}`; texts: `{s['texts']}`.\n\n"
            + markdown_table(["", "value"], rows) + f"\n\nRule: {s['rule']} (k = {s['k']:g}; the paper does not publish k).")
    return ("Token-level loss analysis (Figure 7)", body), [Path(p) for p in s.get("plots", [])]
