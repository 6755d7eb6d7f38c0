"""Why rows failed, counted by kind.

Every check in the toolkit says why it refused an answer in one line: the stage-1 parser ("4 pairs instead of
5"), the stage-2 answer checks ("only boilerplate (...)"), the judge's parser ("no score found (...)"), the
request itself ("the teacher refused the request (<the server's message>)"). A reason's kind is that line
without its particulars: whatever follows an opening bracket or quote or " at character", numbers as N. So
"pair 3 repeats the genre of pair 1" and "pair 5 repeats the genre of pair 2" are one kind, and reports count
kinds (`count_reasons`), never rewrite or guess a reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_DETAIL = re.compile(r"\s*(?:[(\[{'\"`]| at character\b).*$", re.S)
_NUMBER = re.compile(r"\d+")
MAX_KIND_CHARS = 80


def reason_kind(reason: str) -> str:
    """The kind of one reason (its first line without particulars); see the module docstring."""
    line = (reason.strip().splitlines() or [""])[0]
    kind = _NUMBER.sub("N", _DETAIL.sub("", line)).rstrip(" :;,.-")
    return (kind or line or "no reason given")[:MAX_KIND_CHARS]


def count_reasons(reasons: Iterable[str | None]) -> dict[str, int]:
    """Reason kinds and how many rows gave each, most frequent first (rows without a reason are left out)."""
    counts = Counter(reason_kind(r) for r in reasons if r)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def reasons_line(counts: dict[str, int]) -> str:
    """`kind ×n; kind ×n` for a console line or a table cell ('' when there is none)."""
    return "; ".join(f"{kind} ×{n}" for kind, n in counts.items())
