"""A language pack: `data/prompts/<lang>/language.yaml`, validated once, read by every language-aware step.

The pack is data only. Its `language.yaml` says how to cut text into content terms (keyword coverage, the
heuristic judge), which terms are stop words, the heuristic judge's fitted bands, and where the language's
sample corpus and reference set are. Beside it stand the prompt templates and `boilerplate.yaml`. Adding a
language means adding a folder (`mga language new`), never editing code.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from mga.distill.core.errors import MgaError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

LANGUAGE_FILE = "language.yaml"
BOILERPLATE_FILE = "boilerplate.yaml"


class Section(BaseModel):
    """Unknown keys are refused (a misspelt key must not be ignored silently)."""

    model_config = ConfigDict(extra="forbid")


class SuffixFold(Section):
    """Fold an inflected word onto its stem: drop `suffix` from words longer than `min_length`, unless the
    word ends in one of `unless` (English plurals: assertions -> assertion, but not class -> clas)."""

    suffix: str = Field(min_length=1)
    min_length: int = Field(4, ge=1)
    unless: list[str] = Field(default_factory=list)


class Segmentation(Section):
    """How text becomes terms.

    `words`: every match of `pattern` is a term (lower-cased if `lowercase`), stop words dropped, suffixes
    folded. `char_ngrams`: for scripts without spaces: every match of `pattern` is a run of term characters,
    cut into overlapping `n`-grams; an n-gram made only of stop characters is dropped. With `word_pattern`,
    char_ngrams also keeps each match of it whole, as one term (Japanese: katakana loanwords and Latin words,
    which bigrams would cut into fragments shared by unrelated words).
    """

    method: Literal["words", "char_ngrams"]
    pattern: str = Field(description="regular expression of a word (words) or of a run of term characters (char_ngrams)")
    n: int = Field(2, ge=1, le=4, description="char_ngrams: characters per term")
    word_pattern: str | None = Field(None, description="char_ngrams: regular expression of runs kept whole as terms")
    lowercase: bool = True
    suffix_folds: list[SuffixFold] = Field(default_factory=list)

    @field_validator("pattern", "word_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        try:
            re.compile(pattern or "")
        except re.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
        return pattern


class HeuristicJudgeBands(Section):
    """The heuristic judge's mapping signal -> score, fitted on the reference set (`mga judge --calibrate
    --leave-one-out --write-bands`); `null` until a reference set exists."""

    signal_weight: float = Field(0.3, ge=0.0, le=1.0, description="share of the MiniLM cosine in the signal")
    bands: tuple[float, float, float, float] | None = Field(None, description="signal at which scores 2, 3, 4, 5 begin")
    fitted_on: str | None = Field(None, description="which reference set, how many rewrites")
    leave_one_out: dict[str, float | int | None] | None = Field(None, description="agreement when each document is left out of the fit")

    @field_validator("bands")
    @classmethod
    def _ordered(cls, bands):
        if bands is not None and list(bands) != sorted(bands):
            raise ValueError(f"bands must not decrease, got {list(bands)}")
        return bands


class LanguagePack(Section):
    code: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    display_name: str = Field(min_length=1)
    segmentation: Segmentation
    stop_words: list[str] = Field(default_factory=list, description="words (words); single characters, and whole words of word_pattern (char_ngrams)")
    scripts: list[str] = Field(default_factory=list, description="Unicode scripts of the language (first word of a "
                               "letter's Unicode name: LATIN, CJK, HIRAGANA); documents mostly in others are counted "
                               "and warned about; empty: no check")
    sample_corpus: str | None = Field(None, description="file under data/sample/ with real text in the language")
    reference: str | None = Field(None, description="file under data/reference/ with scored rewrites")
    heuristic_judge: HeuristicJudgeBands = HeuristicJudgeBands()

    @model_validator(mode="after")
    def _stop_characters(self):
        seg = self.segmentation
        if seg.method == "char_ngrams" and not seg.word_pattern:
            long = [w for w in self.stop_words if len(w) != 1]
            if long:
                raise ValueError(f"stop_words: char_ngrams segmentation takes single characters (words too with "
                                 f"a word_pattern), got {long[:3]}")
        return self


def prompts_root() -> Path:
    """The folder holding one sub-folder per bundled language pack."""
    from mga.data import data_path

    return data_path("prompts")


def available_languages(root: Path | None = None) -> list[str]:
    root = root or prompts_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def pack_dir(code: str, root: Path | None = None) -> Path:
    folder = (root or prompts_root()) / code
    if not folder.is_dir():
        available = ", ".join(available_languages(root))
        raise MgaError(f"no language pack '{code}' (available: {available}); start one with `mga language new {code} --from en`")
    return folder


def validation_problems(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()]


def read_pack(folder: Path) -> LanguagePack:
    """Parse and validate one pack's `language.yaml`; any problem is one MgaError line per field."""
    path = folder / LANGUAGE_FILE
    if not path.is_file():
        raise MgaError(f"{path}: missing (every language pack needs one; see docs/languages.md)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MgaError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    try:
        pack = LanguagePack.model_validate(data)
    except ValidationError as e:
        raise MgaError("\n".join(f"{path}: {problem}" for problem in validation_problems(e))) from None
    if pack.code != folder.name:
        raise MgaError(f"{path}: code '{pack.code}' differs from the folder name '{folder.name}'")
    return pack


@cache
def language_pack(code: str) -> LanguagePack:
    """The bundled pack of a language, read once per process."""
    return read_pack(pack_dir(code))


def sample_corpus_path(code: str) -> Path | None:
    """The bundled sample corpus of a language (`sample_corpus:` of its pack), if it names one."""
    from mga.data import data_path

    name = language_pack(code).sample_corpus
    return data_path("sample", name) if name else None


def boilerplate_patterns_of(folder: Path) -> list[str]:
    path = folder / BOILERPLATE_FILE
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    patterns = data.get("patterns") or [] if isinstance(data, dict) else None
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise MgaError(f"{path}: 'patterns' must be a list of regular expressions")
    return patterns


def in_script(text: str, scripts: list[str], sample: int = 2000) -> bool:
    """Whether at least half of the first `sample` letters of `text` are in one of `scripts` (True when no
    scripts are given, or the text has no letters): a cheap check that a document is in the prompts' language."""
    letters = [c for c in text[: sample * 2] if c.isalpha()][:sample]
    if not scripts or not letters:
        return True
    return sum(unicodedata.name(c, "").split(" ")[0] in scripts for c in letters) * 2 >= len(letters)
