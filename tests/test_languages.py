"""Language packs: every shipped pack passes `mga language check`; the checker catches each kind of mistake;
`mga language new` scaffolds a pack the checker then holds to translation; segmentation is the pack's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mga.distill.cli.main import app
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.language import (
    available_languages,
    language_pack,
    prompts_root,
    read_pack,
)
from mga.judge.fit import write_bands
from mga.judge.keywords import keyword_coverage, keywords, terms
from mga.distill.language.check import check_pack
from typer.testing import CliRunner

SHIPPED = available_languages()


def test_three_languages_ship():
    assert {"en", "zh", "ja"} <= set(SHIPPED)


@pytest.mark.parametrize("code", SHIPPED)
def test_every_shipped_pack_passes_the_check(code):
    result = CliRunner().invoke(app, ["language", "check", code])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert f"ok: {code}" in result.output and "error:" not in result.output
    pack = language_pack(code)
    assert pack.heuristic_judge.bands is not None and pack.sample_corpus and pack.reference


@pytest.fixture
def packs(tmp_path) -> Path:
    """A private copy of the shipped packs to break."""
    root = tmp_path / "prompts"
    shutil.copytree(prompts_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _errors(code: str, root: Path) -> list[str]:
    problems, _ = check_pack(code, root)
    return [p.line() for p in problems if p.level == "error"]


def test_the_check_names_the_file_of_each_problem(packs):
    ja = packs / "ja"
    (ja / "rewrite_strict.user.j2").write_text((ja / "rewrite_strict.user.j2").read_text().replace("{{ audience }}", "読者"))
    (ja / "rewrite_base.user.j2").write_text((ja / "rewrite_base.user.j2").read_text() + "\n{{ tone }}")
    (ja / "judge.user.j2").write_text((ja / "judge.user.j2").read_text().replace('"score"', '"点数"'))
    (ja / "pairs.user.j2").write_text((ja / "pairs.user.j2").read_text().replace('{"pairs": [', '{"pairs": [}'))
    (ja / "rewrite_relaxed.system.j2").write_text("You are a creative writer. Take the themes of the text and write with them.")
    (ja / "pairs.system.j2").unlink()
    relaxed = ja / "rewrite_relaxed.user.j2"
    relaxed.write_text(relaxed.read_text().replace('{{ fence("document", text) }}', "<文書>\n{{ text }}\n</文書>"))
    (ja / "boilerplate.yaml").write_text("patterns:\n  - '注\\s*[:：'\n  - '.*'\n")
    errors = _errors("ja", packs)
    expected = {
        "rewrite_strict.user.j2": "never uses '{{ audience }}'",
        "rewrite_base.user.j2": "uses '{{ tone }}', which the toolkit never fills",
        "judge.user.j2": "lacks key(s) score",
        "pairs.user.j2": "JSON example does not parse",
        "rewrite_relaxed.system.j2": "looks untranslated: English words",
        "pairs.system.j2": "missing",
        "boilerplate.yaml": "does not compile",
    }
    for name, message in expected.items():
        assert any(f"{ja / name}: " in e and message in e for e in errors), (name, errors)
    assert any("matches an empty line" in e for e in errors)
    assert f"{relaxed}: puts '{{{{ text }}}}' in the prompt unfenced" in "\n".join(errors)


def test_the_check_reports_a_segmentation_that_finds_no_terms(packs):
    yaml_path = packs / "ja" / "language.yaml"
    yaml_path.write_text(re.sub(r"pattern: '.*'", "pattern: '[a-z]{40,}'", yaml_path.read_text()))
    errors = _errors("ja", packs)
    assert any(e.startswith(f"{yaml_path}: segmentation yields no terms on") for e in errors), errors
    yaml_path.write_text(yaml_path.read_text().replace("method: char_ngrams", "method: letters"))
    errors = _errors("ja", packs)
    assert errors and all(e.startswith(f"{yaml_path}: segmentation.method") for e in errors), errors


def test_new_scaffolds_every_file_and_the_check_lists_what_to_translate(packs):
    result = CliRunner().invoke(app, ["language", "new", "de", "--from", "en", "--root", str(packs)])
    assert result.exit_code == 0, result.output
    de = packs / "de"
    assert {p.name for p in (packs / "en").iterdir()} | {"CHECKLIST.md"} == {p.name for p in de.iterdir()}
    checklist = (de / "CHECKLIST.md").read_text()
    assert "rewrite_strict.system.j2" in checklist and "mga language check de" in checklist
    pack = read_pack(de)
    assert pack.code == "de" and pack.heuristic_judge.bands is None and pack.reference is None
    errors = _errors("de", packs)
    templates = sorted(p.name for p in de.glob("*.j2"))
    assert len(templates) == 10
    for name in [*templates, "boilerplate.yaml"]:
        assert f"{de / name}: identical to the 'en' pack's file: not translated yet" in errors
    check = CliRunner().invoke(app, ["language", "check", "de", "--root", str(packs)])
    assert check.exit_code != 0 and isinstance(check.exception, MgaError)
    again = CliRunner().invoke(app, ["language", "new", "de", "--root", str(packs)])
    assert "already exists" in str(again.exception)
    bad = CliRunner().invoke(app, ["language", "new", "German", "--root", str(packs)])
    assert "ISO 639" in str(bad.exception)


def test_japanese_terms_are_kanji_bigrams_and_whole_loanwords():
    text = "パッケージを安全に削除するには dpkg --purge を実行します。The end"
    assert terms(text, "ja") == ["パッケージ", "安全", "削除", "dpkg", "purge", "実行", "the", "end"]
    assert terms("一二三", "ja") == []  # bigrams made only of stop characters
    original = read_rows(language_pack_path("ja"))[0]["text"]
    assert len(keywords(original, "ja")) >= 10
    assert keyword_coverage(original, original, "ja") == 1.0
    assert keyword_coverage(original, "今日は晴れています。", "ja") < 0.1


def language_pack_path(code: str) -> Path:
    from mga.distill.core.config import default_corpus_path

    return default_corpus_path(code)


def test_default_corpus_follows_the_language():
    assert language_pack_path("ja").name == "corpus_ja.jsonl"
    assert language_pack_path("en").name == "corpus.jsonl"
    rows = read_rows(language_pack_path("ja"))
    assert len(rows) >= 20 and all(r["license"] and r["source"].startswith("Debian debian-faq-ja") for r in rows)


def test_write_bands_replaces_only_its_block(packs):
    path = packs / "ja" / "language.yaml"
    before = path.read_text()
    report = {"reference": "x/ja.jsonl", "bands": (0.1, 0.2, 0.3, 0.4), "signal_weight": 0.3, "documents": 10, "n": 50,
              "leave_one_out": {"exact": 0.5, "within_1": 0.9, "spearman": 0.7, "mean_abs_error": 0.6}}
    write_bands("ja", report, root=packs)
    after = path.read_text()
    assert after.split("heuristic_judge:")[0] == before.split("heuristic_judge:")[0]  # comments kept
    pack = read_pack(packs / "ja")
    assert pack.heuristic_judge.bands == (0.1, 0.2, 0.3, 0.4) and pack.heuristic_judge.leave_one_out["exact"] == 0.5
    language_pack.cache_clear()


def test_a_broken_language_yaml_is_one_line_per_field(packs):
    path = packs / "zh" / "language.yaml"
    path.write_text(path.read_text().replace("code: zh", "code: ja").replace("n: 2", "n: 9"))
    with pytest.raises(MgaError) as info:
        read_pack(packs / "zh")
    assert str(info.value) == f"{path}: segmentation.n: Input should be less than or equal to 4"
    path.write_text(path.read_text().replace("n: 9", "n: 2"))
    with pytest.raises(MgaError, match="differs from the folder name 'zh'"):
        read_pack(packs / "zh")


def test_figures_quoted_in_the_docs_are_the_recorded_fits():
    """docs/languages.md copies each pack's leave-one-out figures from its language.yaml; they must not drift."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "languages.md").read_text(encoding="utf-8")
    for code in SHIPPED:
        loo = language_pack(code).heuristic_judge.leave_one_out
        row = next(line for line in doc.splitlines() if line.startswith(f"| {code} | "))
        assert f"| {100 * loo['exact']:.0f}% | {100 * loo['within_1']:.0f}% |" in row, (code, row, loo)


def test_the_heuristic_judge_in_japanese_tells_originals_from_unrelated_text_but_not_from_other_faq_answers():
    """Measures what the quickstart-ja recipe says about turning the controls off: positives and unrelated
    text are told apart; another Debian FAQ answer mostly is not (it shares the domain's loanwords)."""
    from mga.judge.controls import destroy
    from mga.judge.heuristic import HeuristicJudge

    docs = [d["text"] for d in read_rows(default_reference_path_ja())][:4]
    judge = HeuristicJudge("ja")
    others = [(a, b) for a in docs for b in docs if a is not b]
    positives = [s for s, _ in judge.score_many(docs, docs)]
    negatives = [s for s, _ in judge.score_many([a for a, _ in others], [destroy(a, b, "ja", 1) for a, b in others])]
    unrelated = [s for s, _ in judge.score_many(docs, ["明日は晴れのち曇り、最高気温は十八度の予想です。"] * len(docs))]
    assert min(positives) == 5 and max(unrelated) <= 2
    assert sum(s <= 2 for s in negatives) / len(negatives) < 0.8  # below the controls' bar: hence controls: 0


def default_reference_path_ja() -> Path:
    from mga.judge.reference import default_reference_path

    return default_reference_path("ja")
