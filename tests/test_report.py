"""Reports reproduce the paper's Table 1 and Table 2 from judged rows (unscored items count as failures)."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest
from mga.distill.cli.main import app
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_rows
from mga.judge.report import write_report
from mga.judge.scores import summarize
from typer.testing import CliRunner

TOTAL = 15_355
TABLE1 = {"labeler": (4120, 7143, 3034, 661, 214), "tool SLM": (3788, 7124, 3224, 736, 285)}
TABLE2 = {
    "Base": (3788, 7124, 3224, 736, 285),
    "Strict": (6814, 5220, 2384, 520, 227),
    "Relaxed": (408, 1685, 3889, 4156, 5086),
}


def rows_from_counts(counts, total=TOTAL, variant="base", backend="llm"):
    """Judged rows with these counts of scores 5..1; the rest of `total` unscored (bad answers)."""
    rows = []
    for score, n in zip((5, 4, 3, 2, 1), counts):
        rows += [{"judge": {"score": score, "status": "scored", "backend": backend, "model": "judge-llm"}}] * n
    rows += [{"judge": {"score": None, "status": "unscored", "reason": "score 7 out of range 1-5",
                        "backend": backend, "model": "judge-llm"}}] * (total - len(rows))
    return [{**row, "variant": variant, "status": "ok", "content_split": f"rewrite {i}",
             "meta": {"docid": "d", "chunk_id": 0, "pair_id": i}} for i, row in enumerate(rows)]


def test_summarize_counts_unscored_as_failures():
    s = summarize(rows_from_counts(TABLE1["labeler"]))
    assert s["total"] == TOTAL and s["unscored"] == TOTAL - sum(TABLE1["labeler"]) == 183
    assert s["counts"] == {5: 4120, 4: 7143, 3: 3034, 2: 661, 1: 214}
    assert s["rate_ge3"] == 93.11


def test_table1_from_paper_counts(tmp_path):
    models = {name: rows_from_counts(counts) for name, counts in TABLE1.items()}
    md_path = write_report(models, tmp_path, judge_label="LLM judge (Limited Consistency)", reference_model="labeler")
    md = md_path.read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["models"]["labeler"]["rate_ge3"] == 93.11
    assert data["models"]["tool SLM"]["rate_ge3"] == 92.06
    assert data["models"]["tool SLM"]["diff"] == -1.05
    assert data["models"]["tool SLM"]["unscored"] == 198
    slm_line = next(line for line in md.splitlines() if line.startswith("| tool SLM"))
    assert "| 15,355 | 3,788 | 7,124 | 3,224 | 736 | 285 | 198 | 92.06% | [91.62, 92.48] | -1.05 |" in slm_line
    assert data["models"]["labeler"]["rate_ge3_ci95"] == [92.70, 93.50]
    low, high = data["models"]["tool SLM"]["diff_ci95"]
    assert low < -1.05 < high and data["models"]["tool SLM"]["diff_items"] == TOTAL
    assert "93.11%" in md and "LLM judge (Limited Consistency)" in md
    assert "Table 2" not in md  # one variant, not asked


def test_table2_from_paper_counts(tmp_path):
    models = {f"SLM-{name}": rows_from_counts(counts) for name, counts in TABLE2.items()}
    write_report(models, tmp_path, judge_label="LLM judge", table2=True)
    variants = json.loads((tmp_path / "report.json").read_text())["variants"]
    assert (variants["SLM-Strict"]["le2"], variants["SLM-Relaxed"]["le2"]) == (4.86, 60.19)
    assert (variants["SLM-Strict"]["ge4"], variants["SLM-Relaxed"]["ge4"]) == (78.37, 13.63)
    assert (variants["SLM-Strict"]["eq5"], variants["SLM-Relaxed"]["eq5"]) == (44.38, 2.66)
    assert (variants["SLM-Base"]["le2"], variants["SLM-Base"]["ge4"], variants["SLM-Base"]["eq5"]) == (6.65, 71.06, 24.67)
    md = (tmp_path / "report.md").read_text()
    assert "| 4.86% [4.54, 5.22] | 78.37% [77.71, 79.02] | 44.38% [43.59, 45.16] |" in md
    assert "| 60.19% [59.41, 60.96] |" in md
    assert (tmp_path / "variants.png").stat().st_size > 1000


def test_variants_in_rows_add_table2_and_self_contained_html(tmp_path):
    rows, teacher = [], []
    for variant, counts in TABLE2.items():
        rows += rows_from_counts([c // 100 for c in counts], total=160, variant=variant.lower())
        teacher += rows_from_counts([c // 100 for c in TABLE1["labeler"]], total=160, variant=variant.lower())
    extra = tmp_path / "loss.png"
    extra.write_bytes(_tiny_png())
    write_report({"teacher": teacher, "slm": rows}, tmp_path / "r", judge_label="heuristic judge",
                 images=[extra], sections=[("Quantization", "| scheme | size |\n|---|---|\n| w4 | 1 MB |")])
    out = tmp_path / "r"
    md = (out / "report.md").read_text()
    assert "## Table 2" in md and "slm / strict" in md and "slm / relaxed" in md
    page = (out / "report.html").read_text()
    assert "<table>" in page and "Rate(≥3)" in page and "Quantization" in page
    assert not re.search(r"<img[^>]+src=\"(?!data:image/png;base64,)", page), "images must be inlined"
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(uris) == 3 and all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
    assert (out / "scores.png").stat().st_size > 1000


def test_explicit_variant_groups_for_table2(tmp_path):
    variants = {f"teacher · {v}": rows_from_counts(TABLE2[v]) for v in ("Strict", "Relaxed")}
    write_report({"teacher": rows_from_counts(TABLE1["labeler"])}, tmp_path, variants=variants)
    data = json.loads((tmp_path / "report.json").read_text())["variants"]
    assert data["teacher · Strict"]["le2"] == 4.86 and data["teacher · Relaxed"]["eq5"] == 2.66


def _tiny_png() -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def test_heuristic_scores_are_labelled_as_such(tmp_path):
    write_report({"m": rows_from_counts((3, 2, 1, 0, 0), total=7, backend="heuristic")}, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "heuristic (judge-llm)" in md and "not from an LLM judge" in md


def test_cli_report_names_from_paths_and_reference(tmp_path):
    write_rows(tmp_path / "teacher.jsonl", rows_from_counts(TABLE1["labeler"]))
    write_rows(tmp_path / "slm.jsonl", rows_from_counts(TABLE1["tool SLM"]))
    result = CliRunner().invoke(app, ["report", str(tmp_path / "slm.jsonl"), f"teacher={tmp_path / 'teacher.jsonl'}",
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["reference_model"] == "teacher" and data["models"]["slm"]["diff"] == -1.05
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing.jsonl")])
    assert isinstance(bad.exception, MgaError) and "file not found" in str(bad.exception)


def test_unknown_reference_model_is_a_user_error(tmp_path):
    with pytest.raises(MgaError, match="reference model"):
        write_report({"a": rows_from_counts((1, 0, 0, 0, 0), total=1)}, tmp_path, reference_model="nobody")


def test_embedding_map_draws_originals_and_each_variant(tmp_path):
    from mga.judge.embed_map import embedding_map

    topics = ["The heart pumps blood through arteries and veins.", "Volcanoes erupt when magma reaches the surface.",
              "Bees pollinate flowers while collecting nectar.", "Rivers carve valleys over thousands of years."]
    rows = []
    for d, text in enumerate(topics):
        for variant, rewrite in (("base", f"A story for children: {text}"), ("strict", text.replace(".", "!")),
                                 ("relaxed", "A poem about friendship and autumn leaves.")):
            rows.append({"meta": {"docid": str(d), "chunk_id": 0, "raw_text": text, "pair_id": 0},
                         "content_split": rewrite, "variant": variant, "status": "ok",
                         "judge": {"score": 4, "status": "scored", "backend": "llm", "model": "j"}})
    png = embedding_map(rows, tmp_path / "map.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    write_report({"slm": rows}, tmp_path / "r", embed=True)
    assert (tmp_path / "r" / "embedding_map.png").exists()
    assert "embedding_map" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(MgaError, match="at least 5"):
        embedding_map(rows[:1], tmp_path / "few.png")


def test_models_scored_by_different_judges_get_a_judge_column(tmp_path):
    write_report({"teacher": rows_from_counts((2, 1, 0, 0, 0), total=3),
                  "slm": rows_from_counts((1, 0, 0, 1, 0), total=3, backend="heuristic")}, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| judge |" in md and "| heuristic (judge-llm) |" in md and "| llm (judge-llm) |" in md
    assert 'class="neg"' in (tmp_path / "report.html").read_text()  # Diff -66.67 highlighted


def test_unequal_item_sets_are_refused_unless_allowed(tmp_path):
    teacher = rows_from_counts((5, 3, 1, 1, 0), total=10)
    slm = rows_from_counts((4, 2, 1, 1, 0), total=9)  # one item fewer
    with pytest.raises(MgaError, match="different eval items") as error:
        write_report({"teacher": teacher, "slm": slm}, tmp_path)
    assert "\n" not in str(error.value) and "--allow-unequal" in str(error.value)
    write_report({"teacher": teacher, "slm": slm}, tmp_path, allow_unequal=True)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["equal_item_sets"] is False and any("UNEQUAL ITEM SETS" in n for n in data["notes"])
    assert data["models"]["slm"]["diff_items"] == 9
    moved = [{**row, "meta": {**row["meta"], "docid": "other"}} if i == 0 else row for i, row in enumerate(slm + slm[:1])]
    with pytest.raises(MgaError, match="1 of teacher's missing, 1 others"):  # same size, one item swapped
        write_report({"teacher": teacher, "slm": moved}, tmp_path)
    variants = {"teacher · strict": rows_from_counts((1, 0, 0, 0, 0), total=3)}
    with pytest.raises(MgaError, match="teacher · strict"):  # Table 2 lines are checked too
        write_report({"teacher": teacher}, tmp_path, variants=variants)


def test_cli_report_on_unequal_sets_is_one_error_line_exit_2(tmp_path):
    import subprocess
    import sys

    write_rows(tmp_path / "teacher.jsonl", rows_from_counts((5, 3, 1, 1, 0), total=10))
    write_rows(tmp_path / "slm.jsonl", rows_from_counts((4, 2, 1, 1, 0), total=9))
    write_rows(tmp_path / "raw.jsonl", [{"meta": {"docid": "d", "chunk_id": 0, "pair_id": 0}, "content_split": "x"}])
    mga = [sys.executable, "-c", "from mga.distill.cli.main import main; main()", "report"]
    done = subprocess.run([*mga, f"teacher={tmp_path / 'teacher.jsonl'}", f"slm={tmp_path / 'slm.jsonl'}",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 2 and said.count("error:") == 1 and "Traceback" not in said
    assert "different eval items" in said
    done = subprocess.run([*mga, str(tmp_path / "raw.jsonl"), "-o", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "raw.jsonl has no judge verdicts" in done.stdout + done.stderr
    allowed = CliRunner().invoke(app, ["report", f"teacher={tmp_path / 'teacher.jsonl'}", f"slm={tmp_path / 'slm.jsonl'}",
                                       "-o", str(tmp_path / "out"), "--allow-unequal"])
    assert allowed.exit_code == 0, allowed.output
    assert "UNEQUAL ITEM SETS" in (tmp_path / "out" / "report.md").read_text()


def test_failed_models_are_flagged_and_judge_health_counts_reasks(tmp_path):
    teacher = rows_from_counts((8, 2, 0, 0, 0), total=10)
    slm = rows_from_counts((5, 1, 0, 0, 0), total=10)  # 4 of 10 unscored
    for row in slm[:2]:
        row["judge"] = {**row["judge"], "attempts": 3}
    slm[-1] = {**slm[-1], "status": "failed", "reason": "generation failed: OOM", "content_split": "",
               "judge": {**slm[-1]["judge"], "attempts": 0, "reason": "rewrite failed"}}
    write_report({"teacher": teacher, "slm": slm}, tmp_path, max_failed_share=0.1)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["models"]["slm"]["flagged"] is True and data["models"]["teacher"]["flagged"] is False
    assert data["flags"][0].startswith("FLAGGED: slm: 40.0%") and data["notes"][0] == data["flags"][0]
    health = data["health"]["slm"]
    assert (health["unscored"], health["generation_failed"], health["judge_unparsed"]) == (4, 1, 3)
    assert (health["parse_reasks"], health["rows_reasked"]) == (4, 2)
    md = (tmp_path / "report.md").read_text()
    assert md.index("FLAGGED: slm") < md.index("## Table 1") < md.index("\n## Judge health\n")
    assert "| slm | 10 | 40.00% | 1 | 3 | 4 (2 rows) |" in md


def test_wide_diff_interval_is_said_with_items_needed(tmp_path):
    teacher = rows_from_counts((30, 10, 0, 0, 0), total=40)
    slm = rows_from_counts((20, 10, 0, 10, 0), total=40)
    write_report({"teacher": teacher, "slm": slm}, tmp_path, target_gap=2.0)
    data = json.loads((tmp_path / "report.json").read_text())
    low, high = data["models"]["slm"]["diff_ci95"]
    note = next(n for n in data["notes"] if n.startswith("The Diff of slm"))
    needed = int(re.search(r"About ([\d,]+) eval items", note).group(1).replace(",", ""))
    assert needed == math.ceil(40 * ((high - low) / 2.0) ** 2) and needed > 40


def test_judge_health_reports_agreement_with_reference_scores(tmp_path):
    from mga.judge.health import reference_key

    teacher = rows_from_counts((2, 1, 1, 0, 0), total=4)
    slm = [{**row, "content_split": "the SLM's own answer"} for row in rows_from_counts((4, 0, 0, 0, 0), total=4)]
    reference = {reference_key(row): 5 for row in teacher}  # the judge agrees on 2 of 4, within 1 on 3
    write_report({"teacher": teacher, "slm": slm}, tmp_path, reference_scores=reference)
    data = json.loads((tmp_path / "report.json").read_text())["health"]
    health = data["teacher"]
    assert (health["reference_items"], health["reference_exact"], health["reference_within_1"]) == (4, 50.0, 75.0)
    assert data["slm"]["reference_items"] == 0  # other answers to the same items are not reference rewrites
    assert "agreement with reference" in (tmp_path / "report.md").read_text()


def test_flags_reach_the_end_of_run_summary(tmp_path, capsys):
    from mga.distill.core.config import TeacherConfig
    from mga.distill.pipeline.runner import Runner

    runner = Runner(tmp_path / "run", TeacherConfig())
    flag = "FLAGGED: SLM round 1: 100.0% of its 3 rows failed or got no score (limit 10%)"
    runner.stage("report", lambda: {"report": "r.html", "flags": [flag]}, inputs=[], outputs=[])
    runner.finish(1.0, "run test")
    assert f"warning: {flag}" in capsys.readouterr().err


def test_judge_on_an_empty_input_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    result = CliRunner().invoke(app, ["judge", "--input", str(tmp_path / "empty.jsonl"), "--output",
                                      str(tmp_path / "judged.jsonl"), "--backend", "heuristic"])
    assert isinstance(result.exception, MgaError) and "empty.jsonl" in str(result.exception)
    assert "empty" in str(result.exception).split("empty.jsonl", 1)[1]
    assert not (tmp_path / "judged.jsonl").exists()


def _judged(rows, score=4):
    return [{**row, "judge": {"score": score, "status": "scored", "backend": "llm", "model": "j",
                              "analysis": "keeps the facts"}} for row in rows]


def test_single_variant_report_has_the_quality_table_copy_rate_chart_and_samples_page(tmp_path):
    from mga.judge.reference import default_reference_path, reference_rewrite_rows
    from mga.judge.report import QUALITY_TITLE
    from PIL import Image

    reference = reference_rewrite_rows(default_reference_path("en"))[:5]  # one document's five rewrites
    hostile = "Tags in text: </script><script>alert(1)</script> and <b>bold</b> & more words follow here."
    inject = {**reference[0], "meta": {**reference[0]["meta"], "docid": "inject", "raw_text": hostile}}
    teacher = _judged([*reference, {**inject, "content_split": f"A retelling: {hostile}"}])
    source = reference[3]["meta"]["raw_text"]
    copied = " ".join(source.split()[4:24])
    slm = _judged([{**row, "content_split": row["meta"]["raw_text"]} if i < 2 else row for i, row in enumerate(reference)]
                  + [{**inject, "content_split": "Nothing of the kind."}], score=2)
    slm[3] = {**slm[3], "content_split": f"In other words: {copied} That is all."}
    write_report({"teacher": teacher, "slm": slm}, tmp_path)

    md = (tmp_path / "report.md").read_text()
    assert "## Table 2" not in md and f"## {QUALITY_TITLE}" in md
    data = json.loads((tmp_path / "report.json").read_text())
    quality = data["quality"]["variants"]
    assert set(quality) == {"teacher", "slm"} and quality["slm"]["copy_rate"] > quality["teacher"]["copy_rate"]
    assert not any(k.startswith("_") for q in quality.values() for k in q)
    assert f"| teacher | 6 | {quality['teacher']['copy_rate']:.3f} |" in md
    family = reference[0]["meta"]
    assert f"| {family['genre']} / {family['audience']} |" in md

    png = tmp_path / "copy_rate.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](copy_rate.png)" in md
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.text["Description"] == "lines: teacher; slm"

    page = (tmp_path / "report.html").read_text()
    assert 'alt="copy_rate"' in page
    assert page.count("</script>") == page.count("<script") == 1  # the page's own script only
    assert "<b>" not in page and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; and &lt;b&gt;bold&lt;/b&gt;" in page
    expected = re.sub(r"\s+", " ", copied)
    marks = [re.sub(r"\s+", " ", m) for m in re.findall(r'<mark class="copied">(.*?)</mark>', page, re.S)]
    assert expected in marks  # the planted verbatim copy, highlighted
    assert '<select id="samples-line">' in page and '<option value="slm">slm</option>' in page
    assert '<select id="samples-flag">' in page and '<option value="high_copy_rate">' in page
    assert '<option value="score_below_3">' in page
    samples = data["samples"]
    assert samples["shown"] == samples["total"] == 2 and "inject#0" in samples["documents"]
    assert "report.html shows 2 of 2 documents" in md


def test_samples_page_is_bounded_and_chosen_the_same_way_every_time():
    from mga.distill.core.schema import chunk_key
    from mga.judge.config import FilterConfig
    from mga.judge.monitors import measured_rows
    from mga.judge.reference import default_reference_path, reference_rewrite_rows
    from mga.judge.report import sample_documents

    rows = measured_rows(reference_rewrite_rows(default_reference_path("en")))
    copy = next(i for i, row in enumerate(rows) if row["meta"]["pair_id"] == 0 and row["meta"]["docid"] != rows[0]["meta"]["docid"])
    rows[copy] = measured_rows([{**rows[copy], "content_split": rows[copy]["meta"]["raw_text"], "meta": {
        k: v for k, v in rows[copy]["meta"].items() if k != "monitors"}}])[0]
    lines = [("m", rows)]
    first = sample_documents(lines, {"m": {}}, FilterConfig(), limit=4)
    again = sample_documents([("m", list(reversed(rows)))], {"m": {}}, FilterConfig(), limit=4)
    total = len({chunk_key(row) for row in rows})
    assert (first["shown"], first["total"]) == (4, total) and "at most 4" in first["rule"]
    assert [d["key"] for d in first["documents"]] == [d["key"] for d in again["documents"]]  # not the rows' order
    assert chunk_key(rows[copy]) in [d["key"] for d in first["documents"]]  # a flagged document is shown first
    flagged = [r for d in first["documents"] for r in d["rewrites"] if r["flags"]]
    assert [r["flags"] for r in flagged] == [["high_copy_rate"]]
    loose = sample_documents(lines, {"m": {}}, FilterConfig(max_copy_rate=1.0), limit=4)  # the flags follow the config
    assert not any(r["flags"] for d in loose["documents"] for r in d["rewrites"]) and "max_copy_rate 1" in loose["thresholds"]
