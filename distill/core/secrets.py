"""Secrets are marked by type: a config field typed `Secret` holds one, and nothing else is one.

`Secret` is pydantic's `SecretStr` (its value never shows in a repr) that dumps as null in JSON mode, so a
recipe dump, a training config or a launch file never holds it, and reloading a dump gives the same config
without its secrets (the key then comes from `teacher.api_key_env`). Messages about a secret field name the
key, never the value (`is_secret`). `redact` takes key-shaped text out of what a server says back;
`looks_like_secret` tells a key pasted where a name belongs (`teacher.api_key_env`, a `--set` without `=`), so
it is refused without being shown.
"""

from __future__ import annotations

import math
import re
import typing
from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, SecretStr

MASK = "***"
Secret = Annotated[SecretStr, PlainSerializer(lambda value: None, return_type=None, when_used="json")]
_KEY_SHAPED = re.compile(r"\b(sk|key|token)-[A-Za-z0-9_\-*]{6,}")
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|hf|gh[pousr]|glpat|xox[abprs]|AKIA|AIza|ya29)[-_.]?[A-Za-z0-9]", re.ASCII)


def _types(annotation: Any) -> list[Any]:
    """`annotation` and every type nested in it (`X | None`, `Annotated[X, ...]`, `list[X]`)."""
    found = [annotation]
    for arg in typing.get_args(annotation):
        found += _types(arg)
    return found


def is_secret(model: type[BaseModel], loc: tuple[Any, ...] | list[Any]) -> bool:
    """True when the field at `loc` (a pydantic error location or a dotted key split) under `model` is a
    `Secret`; parts that are no field (list indices, union tags) are passed over."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            continue
        types = _types(field.annotation)
        if SecretStr in types:
            return True
        model = next((t for t in types if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return False
    return False


def redact(text: str, api_key: str | None) -> str:
    """`text` without the API key or anything shaped like a key (servers sometimes echo them)."""
    if api_key and api_key != "EMPTY" and len(api_key) >= 4:
        text = text.replace(api_key, MASK)
    return _KEY_SHAPED.sub(lambda m: m.group(1) + "-" + MASK, text)


class HiddenValue(ValueError):
    """A validation error whose value must not be shown (a key pasted where a name belongs)."""


def looks_like_secret(text: str) -> bool:
    """True for text shaped like an API key or token: a known key prefix (`sk-`, `hf_`, `ghp_`, ...), or a
    long run with lower and upper case letters and digits and high entropy (random text, not a name)."""
    text = str(text).strip()
    if _KEY_PREFIX.match(text):
        return True
    if len(text) < 20 or not (re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"\d", text)):
        return False
    counts = Counter(text)
    entropy = -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
    return entropy >= 3.5
