"""Recipes: one YAML file whose keys are the fields of `RunConfig`, validated once at the edge.

`load_recipe` turns every problem (missing file, bad YAML, unknown key, wrong type, bad value, missing input
file) into an `MgaError` whose message names the key and the file, with a "did you mean" for typos.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from mga.distill.core.config import CorpusConfig, LabelConfig, Section, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.core.secrets import MASK, HiddenValue, is_secret
from mga.distill.core.sources import resolve
from mga.distill.train.config import TrainConfig, passthrough_errors
from mga.judge.config import AnalyzeConfig, FilterConfig, JudgeConfig, ReportConfig
from mga.quantize.config import QuantizeConfig
from pydantic import Field, PositiveInt, ValidationError, model_validator


class LoopConfig(Section):
    """The iterative filtering loop (the paper's rounds of SLM answers, judging and retraining)."""

    max_rounds: PositiveInt = 3
    min_rounds: PositiveInt = Field(
        1, description="trained rounds before the target may stop the loop (a demo that shows a round trained on "
        "the SLMs' own pool answers sets 2)")
    target_gap: float = Field(1.0, ge=0.0, description="stop when SLM Rate(>=3) is within this many points")
    target_pairs_valid: float = Field(90.0, ge=0.0, le=100.0,
                                      description="... and SLM-1's valid-pairs rate (percent) is at least this")
    heldout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="documents held out for the SLM-vs-teacher comparison")
    pool_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="documents the SLMs answer to grow the SFT data")
    pool_per_round: PositiveInt | None = Field(
        None, description="pool documents answered per round, never twice; default: the pool split over max_rounds - 1")
    baseline: bool = Field(True, description="round 0: the untrained student answers the eval prompts first")
    backend: Literal["transformers", "llamacpp", "vllm"] = Field(
        "transformers", description="how the SLMs generate: transformers, llama.cpp on an f16 GGUF export (CPUs), vLLM (GPUs)")

    @model_validator(mode="after")
    def _rounds(self) -> LoopConfig:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds ({self.min_rounds}) is more than max_rounds ({self.max_rounds})")
        return self


class RunConfig(Section):
    """A whole run: corpus -> teacher labels -> judge -> filter -> SFT rounds -> quantize -> report."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    run_dir: Path | None = Field(None, description="default: runs/<name>")
    language: str = Field("en", description="prompt set: a folder under data/prompts/")
    seed: int = 0
    corpus: CorpusConfig = CorpusConfig()
    teacher: TeacherConfig = TeacherConfig()
    label: LabelConfig = LabelConfig()
    judge: JudgeConfig = JudgeConfig()
    filter: FilterConfig = FilterConfig()
    train: TrainConfig = TrainConfig()
    loop: LoopConfig = LoopConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    report: ReportConfig = ReportConfig()
    analyze: AnalyzeConfig | None = Field(None, description="token-level loss analysis added to the report")

    @property
    def out_dir(self) -> Path:
        return self.run_dir or Path("runs") / self.name


MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of settings; anything near this size is not one
MAX_DEPTH = 32  # sections nest 3-4 deep (train.lora.target_modules)
MAX_VALUES = 100_000  # values after alias expansion: a few aliases can stand for billions ("billion laughs")


class RecipeLimit(yaml.YAMLError):
    """A recipe beyond the parser's bounds (size, nesting, alias expansion): refused before it is built."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: nesting is checked while composing, the size after alias expansion
    before anything is constructed (an alias is cheap to parse, its expansion is what validation walks).
    YAML 1.1 reads `1e-4` as a string; recipes mean a float."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise RecipeLimit(f"nested deeper than {MAX_DEPTH} levels (line {self.peek_event().start_mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_expansion(node)
        return super().construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past `MAX_VALUES` values or `MAX_DEPTH` levels, or refer to
    themselves; each node is measured once (memoized), so the check is linear in the text."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height) once expanded
    open_nodes: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        if id(node) in open_nodes:
            raise RecipeLimit(f"an alias refers to a section that contains it (line {node.start_mark.line + 1})")
        if id(node) not in measured:
            open_nodes.add(id(node))
            children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            values, height = 1, 1
            for child in children:
                child_values, child_height = visit(child, depth + 1)
                values, height = values + child_values, max(height, child_height + 1)
                if values > MAX_VALUES:
                    raise RecipeLimit(f"aliases expand to more than {MAX_VALUES:,} values "
                                      f"(line {node.start_mark.line + 1}); write the values out instead")
            open_nodes.discard(id(node))
            measured[id(node)] = (values, height)
        values, height = measured[id(node)]
        if depth + height > MAX_DEPTH:
            raise RecipeLimit(f"aliases expand to more than {MAX_DEPTH} levels of nesting (line {node.start_mark.line + 1})")
        return values, height

    visit(root, 0)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to nested recipe data."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():  # which part is the value is unknown, so only a known key is named
        named = re.match(r"[\w.]*", assignment.strip()).group()
        shown = repr(named) if named and _is_key(named) else "(not shown)"
        raise MgaError(f"{source} {shown}: expected KEY=VALUE, e.g. train.learning_rate=1e-4")
    try:
        value = parse_value(raw)
    except RecipeLimit as e:
        raise MgaError(f"{source} {key.strip()}: value refused: {e}") from None
    except yaml.YAMLError:
        value = raw  # not YAML: the text itself (a validation error then names the key)
    set_key(data, key, value, source)


def set_key(data: dict[str, Any], key: str, value: Any, source: str = "--set") -> None:
    """Set the dotted recipe `key` to `value` in nested recipe data."""
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MgaError(f"{source} {key.strip()}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _is_key(dotted: str) -> bool:
    """True for a dotted key that names a field of `RunConfig`."""
    *sections, last = dotted.split(".")
    model = _model_at(tuple(sections)) if sections else RunConfig
    return model is not None and last in model.model_fields


def _model_at(loc: tuple[Any, ...]) -> type[Section] | None:
    model: Any = RunConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, Section)), ann)
    return model if isinstance(model, type) and issubclass(model, Section) else None


def format_errors(error: ValidationError) -> list[str]:
    """One line per problem: `key.path: message`, with a "did you mean" for unknown keys."""
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            choices = list(parent.model_fields) if parent else []
            typo = str(loc[-1])  # a transposition (modle -> model) beats a near miss of another key (mode)
            close = sorted(difflib.get_close_matches(typo, choices, n=3), key=lambda c: sorted(c) != sorted(typo))
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"{path}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        elif isinstance(hidden := err.get("ctx", {}).get("error"), HiddenValue):
            lines.append(f"{path}: {hidden}")  # the value is not shown, not even masked
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {MASK if is_secret(RunConfig, loc) else repr(got)})"
            lines.append(f"{path}: {err['msg']}{shown}")
    return lines


def validate_recipe(data: Any, source: str = "recipe") -> RunConfig:
    if not isinstance(data, dict):
        raise MgaError(f"{source}: a recipe must be a YAML mapping of sections, got {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as e:
        raise MgaError("\n".join(f"{source}: {line}" for line in format_errors(e))) from None
    problems = passthrough_errors(config.train)
    from mga.distill.core.language import available_languages, language_pack

    if config.language not in available_languages():
        available = ", ".join(available_languages())
        problems.append(f"language: no prompt set for language '{config.language}' (available: {available})")
    else:
        try:
            language_pack(config.language)  # a broken language.yaml fails here, not hours into a run
        except MgaError as e:
            problems += [f"language: {line}" for line in str(e).splitlines()]
    if config.corpus.path is not None:
        try:
            resolve(config.corpus.path)  # a file, a folder, a glob or a saved dataset
        except MgaError as e:
            problems.append(f"corpus.path: {e}")
    reference = config.label.reference
    if reference is not None and str(reference) != "bundled" and not Path(reference).exists():
        problems.append(f"label.reference: file not found: {reference}")
    if problems:
        raise MgaError("\n".join(f"{source}: {line}" for line in problems))
    return config


def load_recipe(path: str | Path, overrides: list[str] | None = None, prepare=None) -> RunConfig:
    """Read, override (`overrides`, then `prepare(data)`) and validate a recipe; every user mistake becomes
    one `MgaError` line per problem."""
    path = Path(path)
    if path.is_dir():
        raise MgaError(f"{path}: the recipe is a directory; give a YAML file")
    if not path.is_file():
        raise MgaError(f"recipe not found: {path}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise MgaError(f"{path}: the recipe is over {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a page of settings")
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_Loader) or {}
    except RecipeLimit as e:
        raise MgaError(f"{path}: recipe refused: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MgaError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise MgaError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise MgaError(f"{path}: cannot read the recipe ({e.strerror})") from None
    if isinstance(data, dict):
        for assignment in overrides or []:
            apply_override(data, assignment)
        if prepare is not None:
            prepare(data)
    return validate_recipe(data, source=str(path))


def dump_recipe(config: RunConfig) -> str:
    """The resolved recipe as YAML for the run directory: every setting, no secret (`Secret` fields dump as
    null), so loading it gives the run's config back, its key then read from `teacher.api_key_env`."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
