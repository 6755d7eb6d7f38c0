"""Prompt templates per language and variant, rendered into chat messages.

Templates live in `data/prompts/<language>/` as Jinja2 files, one `<name>.system.j2` and one
`<name>.user.j2` per prompt (PROMPT_SLOTS). Adding a language = adding a pack folder (docs/languages.md). The same
messages are sent to the teacher, used as SFT prompts, and given to the student at inference, so the
student sees exactly what the teacher saw.

Data never closes its own block: every template encloses documents with `fence(name, text)`, which writes
`<name-NONCE>` ... `</name-NONCE>` where NONCE is a digest of all the data in the prompt (`boundary`).
A document cannot contain the closing tag of its block, because the tag depends on the document itself
(it would have to contain its own hash). `tag(name)` gives the tag for instructions that name the block.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

import jinja2
from mga.distill.core.config import VARIANTS  # noqa: F401  (re-exported: prompt files per variant)
from mga.distill.core.errors import MgaError

NONCE_CHARS = 16
# Every prompt of a language pack and the slots the toolkit fills in it (`mga language check` holds each
# pack to this list: a missing template, an unused slot or an unknown one is an error).
PROMPT_SLOTS: dict[str, tuple[str, ...]] = {
    "pairs": ("text", "num_pairs"),
    **{f"rewrite_{variant}": ("text", "genre", "audience") for variant in VARIANTS},
    "judge": ("original", "rewrite"),
}


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


def boundary(*data: str) -> str:
    """The nonce of a prompt's data blocks: a digest of every piece of data the prompt encloses."""
    blob = json.dumps(list(data), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:NONCE_CHARS]


def fences(*data: str) -> dict[str, object]:
    """Template helpers `tag(name)` and `fence(name, text)` bound to the nonce of `data`."""
    nonce = boundary(*data)

    def tag(name: str) -> str:
        return f"{name}-{nonce}"

    def fence(name: str, text: str) -> str:
        if f"</{tag(name)}>".lower() in text.lower():  # needs a text containing its own hash: not by chance
            raise MgaError(f"a document contains its own closing tag </{tag(name)}>")
        return f"<{tag(name)}>\n{text}\n</{tag(name)}>"

    return {"tag": tag, "fence": fence}


def render(language: str, name: str, **slots: object) -> str:
    try:
        return _env(language).get_template(f"{name}.j2").render(**slots).strip()
    except jinja2.TemplateNotFound:
        raise MgaError(f"prompt template '{name}.j2' missing for language '{language}'") from None


def _messages(language: str, name: str, data: dict[str, str], **slots: object) -> list[dict[str, str]]:
    """System + user message of prompt `name`; `data` are the slots a document controls (fenced)."""
    slots = {**slots, **data, **fences(*data.values())}
    return [
        {"role": "system", "content": render(language, f"{name}.system", **slots)},
        {"role": "user", "content": render(language, f"{name}.user", **slots)},
    ]


def pairs_messages(text: str, language: str = "en", num_pairs: int = 5) -> list[dict[str, str]]:
    """Stage 1: ask for `num_pairs` diverse (genre, audience) pairs as JSON."""
    return _messages(language, "pairs", {"text": text}, num_pairs=num_pairs)


def rewrite_messages(
    text: str, genre: str, audience: str, variant: str = "base", language: str = "en"
) -> list[dict[str, str]]:
    """Stage 2: rewrite `text` for one (genre, audience) pair with the Base, Strict or Relaxed prompt."""
    if variant not in VARIANTS:
        raise MgaError(f"unknown prompt variant '{variant}' (choose {', '.join(VARIANTS)})")
    data = {"text": text, "genre": genre, "audience": audience}
    return _messages(language, f"rewrite_{variant}", data)


def judge_messages(original: str, rewrite: str, language: str = "en") -> list[dict[str, str]]:
    """Limited-Consistency judge prompt for one (original, rewrite) pair."""
    return _messages(language, "judge", {"original": original, "rewrite": rewrite})
