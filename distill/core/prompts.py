"""Prompt templates per language and variant, rendered into chat messages.

Templates live in `data/prompts/<language>/` as Jinja2 files, one `<name>.system.j2` and one
`<name>.user.j2` per prompt. Adding a language = adding a folder with the same file names. The same
messages are sent to the teacher, used as SFT prompts, and given to the student at inference, so the
student sees exactly what the teacher saw.
"""

from __future__ import annotations

from functools import cache

import jinja2
from mga.distill.core.config import VARIANTS  # noqa: F401  (re-exported: prompt files per variant)
from mga.distill.core.errors import MgaError


@cache
def _env(language: str) -> jinja2.Environment:
    from mga.data import data_path

    folder = data_path("prompts", language)
    if not folder.is_dir():
        available = sorted(p.name for p in data_path("prompts").iterdir() if p.is_dir())
        raise MgaError(f"no prompt set for language '{language}' (available: {', '.join(available)})")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(language: str, name: str, **slots: object) -> str:
    try:
        return _env(language).get_template(f"{name}.j2").render(**slots).strip()
    except jinja2.TemplateNotFound:
        raise MgaError(f"prompt template '{name}.j2' missing for language '{language}'") from None


def _messages(language: str, name: str, **slots: object) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": render(language, f"{name}.system", **slots)},
        {"role": "user", "content": render(language, f"{name}.user", **slots)},
    ]


def pairs_messages(text: str, language: str = "en", num_pairs: int = 5) -> list[dict[str, str]]:
    """Stage 1: ask for `num_pairs` diverse (genre, audience) pairs as JSON."""
    return _messages(language, "pairs", text=text, num_pairs=num_pairs)


def rewrite_messages(
    text: str, genre: str, audience: str, variant: str = "base", language: str = "en"
) -> list[dict[str, str]]:
    """Stage 2: rewrite `text` for one (genre, audience) pair with the Base, Strict or Relaxed prompt."""
    if variant not in VARIANTS:
        raise MgaError(f"unknown prompt variant '{variant}' (choose {', '.join(VARIANTS)})")
    return _messages(language, f"rewrite_{variant}", text=text, genre=genre, audience=audience)


def judge_messages(original: str, rewrite: str, language: str = "en") -> list[dict[str, str]]:
    """Limited-Consistency judge prompt for one (original, rewrite) pair."""
    return _messages(language, "judge", original=original, rewrite=rewrite)
