"""`mga language check`: is a language pack complete and sound before a run depends on it?

Checks, each problem one line naming the file:
- `language.yaml` parses and validates (segmentation, stop words, bands);
- every prompt of PROMPT_SLOTS has its system and user template; each renders with sample values; every slot
  the toolkit fills is used and no other is asked for;
- the JSON answer examples in the prompts parse (placeholders such as `<2-3 sentences>` or `...` aside)
  and keep the keys the toolkit's parsers read ("pairs"/"genre"/"audience", "score"/"analysis"), which a
  translator must not translate;
- no English is left where a translation is expected. A heuristic, stated plainly: a template of a
  non-English pack that is a byte-for-byte copy of another pack's file, or whose literal text (slots,
  <markers> and JSON keys removed) holds 3 or more distinct common English function words, is reported;
- boilerplate patterns compile and none matches an empty line (it would remove every line);
- the segmentation yields terms on every document of the pack's sample corpus, and on the reference set.
Warnings (no fitted bands, no sample corpus, no reference set) do not fail the check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import jinja2
from jinja2 import meta
from mga.distill.core.errors import MgaError
from mga.distill.core.language import (
    BOILERPLATE_FILE,
    LanguagePack,
    available_languages,
    boilerplate_patterns_of,
    pack_dir,
    read_pack,
)
from mga.distill.core.prompts import PROMPT_SLOTS, fences
from mga.judge.keywords import segmenter

HELPERS = frozenset(fences())  # tag(name), fence(name, text): the unforgeable data blocks (prompts.py)
DOCUMENT_SLOTS = ("text", "original", "rewrite")  # documents: only ever inside fence(...)
SAMPLE_SLOTS = {"text": "", "num_pairs": 5, "genre": "GENRE", "audience": "AUDIENCE", "original": "", "rewrite": "REWRITE"}
# Keys the toolkit's parsers read in the answers (labeling, judge/parse.py): never translated.
ANSWER_KEYS = {"pairs": {"pairs"}, "judge": {"score", "analysis"}}
PAIR_KEYS = {"genre", "audience"}
ENGLISH_MARKERS = frozenset(
    "the and you your with that this which are from must each only not for of to is into these those what "
    "will would should its their them they".split())
MIN_ENGLISH_MARKERS = 3
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")
_JSON_KEY = re.compile(r'"[^"\n]*"\s*:')


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    path: Path
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}"


def _loads_example(text: str) -> Any:
    """Parse a JSON answer example: bare <placeholders> become 1, `, ...` elisions are dropped."""
    text = re.sub(r"(?<![\"\w])<[^<>\"\n]+>", "1", text)
    text = re.sub(r",\s*(?:\.\.\.|…)\s*(?=[\]}])", "", text)
    return json.loads(text)


def json_examples(rendered: str) -> list[str]:
    """Every balanced {...} block of the text that looks like a JSON object (starts with `{"`)."""
    found, start, depth = [], None, 0
    for i, ch in enumerate(rendered):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None and rendered[start + 1 : start + 2] == '"':
                found.append(rendered[start : i + 1])
    return found


def _check_answer_example(prompt: str, path: Path, rendered: str) -> list[Problem]:
    wanted = ANSWER_KEYS.get(prompt)
    if not wanted:
        return []
    examples = json_examples(rendered)
    if not examples:
        return [Problem("error", path, f"no JSON answer example (the {prompt} answer must be a JSON object with keys "
                                       f"{', '.join(sorted(wanted))})")]
    problems = []
    for example in examples:
        try:
            parsed = _loads_example(example)
        except json.JSONDecodeError as e:
            problems.append(Problem("error", path, f"JSON example does not parse ({e.msg} at char {e.pos}): {example[:60]!r}"))
            continue
        missing = wanted - set(parsed) if isinstance(parsed, dict) else wanted
        if missing:
            problems.append(Problem("error", path, f"JSON example lacks key(s) {', '.join(sorted(missing))} that the "
                                                   "toolkit parses (keep JSON keys in English)"))
        elif prompt == "pairs":
            items = parsed["pairs"] if isinstance(parsed["pairs"], list) else []
            if not items or any(not isinstance(i, dict) or PAIR_KEYS - set(i) for i in items):
                problems.append(Problem("error", path, 'JSON example: "pairs" must list objects with keys "genre" '
                                                       'and "audience" (keep JSON keys in English)'))
    return problems


def english_left(source: str, own_stop_words: set[str]) -> list[str]:
    """Distinct common English function words in a template's literal text (see the module docstring)."""
    literal = _JSON_KEY.sub(" ", _TAG.sub(" ", _JINJA.sub(" ", source)))
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", literal)}
    return sorted((words & ENGLISH_MARKERS) - own_stop_words)


def _copied_from(path: Path, root: Path, code: str) -> str | None:
    """The pack (in `root` or among the bundled ones) holding a byte-identical file of the same name."""
    from mga.distill.core.language import prompts_root

    for folder in dict.fromkeys([root, prompts_root()]):
        for other in available_languages(folder):
            twin = folder / other / path.name
            if other != code and twin.is_file() and twin.read_bytes() == path.read_bytes():
                return other
    return None


def check_templates(folder: Path, pack: LanguagePack, sample_text: str, root: Path) -> list[Problem]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             autoescape=False)
    own_stop = {w.lower() for w in pack.stop_words}
    problems: list[Problem] = []
    for prompt, slots in PROMPT_SLOTS.items():
        used: set[str] = set()
        paths = [folder / f"{prompt}.{role}.j2" for role in ("system", "user")]
        for path in paths:
            if not path.is_file():
                problems.append(Problem("error", path, f"missing (the {prompt} prompt needs a system and a user template)"))
                continue
            source = path.read_text(encoding="utf-8")
            try:
                asked = meta.find_undeclared_variables(env.parse(source))
            except jinja2.TemplateSyntaxError as e:
                problems.append(Problem("error", path, f"template syntax error on line {e.lineno}: {e.message}"))
                continue
            used |= asked
            for slot in DOCUMENT_SLOTS:
                if re.search(r"\{\{-?\s*" + slot + r"\s*(?:\||-?\}\})", source):
                    problems.append(Problem("error", path, f"puts '{{{{ {slot} }}}}' in the prompt unfenced: a document "
                                                           f"could close its own block (use {{{{ fence(\"document\", {slot}) }}}})"))
            for slot in sorted(asked - set(slots) - HELPERS):
                problems.append(Problem("error", path, f"uses '{{{{ {slot} }}}}', which the toolkit never fills "
                                                       f"(this prompt gets: {', '.join(slots)})"))
            values = {**SAMPLE_SLOTS, "text": sample_text, "original": sample_text}
            values.update(fences(sample_text, values["rewrite"]))
            try:
                rendered = env.get_template(path.name).render(**values)
            except jinja2.TemplateError as e:
                problems.append(Problem("error", path, f"does not render with sample values: {e}"))
                continue
            if path.name.endswith(".user.j2"):
                problems += _check_answer_example(prompt, path, rendered)
            if pack.code != "en":
                twin = _copied_from(path, root, pack.code)
                english = english_left(source, own_stop)
                if twin:
                    problems.append(Problem("error", path, f"identical to the '{twin}' pack's file: not translated yet"))
                elif len(english) >= MIN_ENGLISH_MARKERS:
                    problems.append(Problem("error", path, f"looks untranslated: English words {', '.join(english[:6])} "
                                                           "outside slots, <markers> and JSON keys (heuristic)"))
        for slot in slots:
            if slot not in used and all(p.is_file() for p in paths):
                problems.append(Problem("error", paths[1], f"never uses '{{{{ {slot} }}}}': the model would not see "
                                                           f"the {slot} (use it in the system or the user template)"))
    return problems


def check_boilerplate(folder: Path, pack: LanguagePack, root: Path) -> list[Problem]:
    path = folder / BOILERPLATE_FILE
    if not path.is_file():
        return [Problem("error", path, "missing (a list of `patterns:`; it may be empty)")]
    try:
        patterns = boilerplate_patterns_of(folder)
    except MgaError as e:
        return [Problem("error", path, str(e).split(": ", 1)[-1])]
    except Exception as e:  # a YAML syntax error
        return [Problem("error", path, f"not valid YAML ({' '.join(str(e).split())})")]
    problems = []
    for pattern in patterns:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            problems.append(Problem("error", path, f"pattern {pattern!r} does not compile: {e}"))
            continue
        if compiled.match(""):
            problems.append(Problem("error", path, f"pattern {pattern!r} matches an empty line: it would remove every line"))
    twin = _copied_from(path, root, pack.code) if pack.code != "en" and patterns else None
    if twin:
        problems.append(Problem("error", path, f"identical to the '{twin}' pack's file: not translated yet"))
    return problems


def _data_file(folder: Path, kind: str, name: str) -> Path:
    from mga.data import data_path

    local = folder / name
    return local if local.is_file() else data_path(kind, name)


def check_segmentation(folder: Path, pack: LanguagePack) -> tuple[list[Problem], dict[str, Any]]:
    from mga.distill.core.io import read_rows

    yaml_path = folder / "language.yaml"
    if not pack.sample_corpus:
        return [Problem("warning", yaml_path, "no sample_corpus: segmentation not checked on real text")], {}
    path = _data_file(folder, "sample", pack.sample_corpus)
    if not path.is_file():
        return [Problem("error", yaml_path, f"sample_corpus {pack.sample_corpus!r} not found ({path})")], {}
    rows = read_rows(path)
    terms = segmenter(pack)
    counts = {str(row.get("id", i)): len(terms(row.get("text") or "")) for i, row in enumerate(rows)}
    empty = [doc for doc, n in counts.items() if n == 0]
    problems = []
    if not rows:
        problems.append(Problem("error", path, "the sample corpus is empty"))
    elif empty:
        problems.append(Problem("error", yaml_path, f"segmentation yields no terms on {len(empty)} of {len(rows)} sample "
                                                    f"documents ({', '.join(empty[:3])}): check segmentation.pattern"))
    return problems, {"documents": len(rows), "median_terms": median(counts.values()) if counts else 0}


def check_reference(folder: Path, pack: LanguagePack) -> tuple[list[Problem], dict[str, Any]]:
    from mga.judge.reference import load_reference

    yaml_path = folder / "language.yaml"
    bands = pack.heuristic_judge.bands
    if not pack.reference:
        problems = [Problem("warning", yaml_path, "no reference set: judges cannot be calibrated for this language")]
        if bands is None:
            problems.append(Problem("warning", yaml_path, "no heuristic_judge.bands: the offline heuristic judge is unavailable"))
        return problems, {}
    path = _data_file(folder, "reference", pack.reference)
    try:
        docs = load_reference(path)
    except MgaError as e:
        return [Problem("error", yaml_path, f"reference set: {e}")], {}
    terms = segmenter(pack)
    problems = [Problem("error", path, f"segmentation yields no terms on reference document '{d['docid']}'")
                for d in docs if not terms(d["text"])]
    if bands is None:
        problems.append(Problem("warning", yaml_path, "heuristic_judge.bands not fitted: run `mga judge --calibrate "
                                                      f"--leave-one-out --write-bands --set language={pack.code}`"))
    return problems, {"documents": len(docs), "rewrites": sum(len(d["pairs"]) for d in docs)}


def check_pack(code: str, root: Path | None = None) -> tuple[list[Problem], dict[str, Any]]:
    """All problems of one pack and a summary of what was checked."""
    from mga.distill.core.language import prompts_root

    root = root or prompts_root()
    folder = pack_dir(code, root)
    try:
        pack = read_pack(folder)
    except MgaError as e:
        return [Problem("error", folder / "language.yaml", line.split(": ", 1)[-1]) for line in str(e).splitlines()], {}
    segmentation, corpus = check_segmentation(folder, pack)
    reference, ref = check_reference(folder, pack)
    sample_text = _sample_text(folder, pack)
    problems = [*check_templates(folder, pack, sample_text, root), *check_boilerplate(folder, pack, root),
                *segmentation, *reference]
    return problems, {"pack": pack, "corpus": corpus, "reference": ref}


def _sample_text(folder: Path, pack: LanguagePack) -> str:
    from mga.distill.core.io import read_rows

    if pack.sample_corpus and (path := _data_file(folder, "sample", pack.sample_corpus)).is_file():
        rows = read_rows(path)
        if rows:
            return rows[0].get("text") or ""
    return "SAMPLE DOCUMENT"
