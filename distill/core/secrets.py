"""What counts as a secret in a recipe or an option, so no message, log line or file ever shows one.

A key is secret when its last part is `api_key`, ends in `_key`, or contains `token`, `password` or
`secret` (`teacher.api_key`, `hub_token`, ...). Messages about such a key name the key, never the value,
whatever the value's type.
"""

from __future__ import annotations

import re

MASK = "***"
_SECRET = re.compile(r"(^|_)key$|token|password|passwd|secret", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """True for a recipe key (dotted path or last part) that holds a secret."""
    last = str(key).strip().split(".")[-1]
    return bool(_SECRET.search(last)) and last not in {"api_key_env", "max_tokens", "tokens_per_minute"}


def mask_secrets(value: object) -> object:
    """A copy of nested data (a recipe dump) with the value of every secret key replaced by `MASK`."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) and v is not None else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
