"""The stage-1 rule check, without an LLM: is the answer JSON holding exactly N distinct (genre, audience) pairs?

Teachers wrap JSON in ```json fences, add a sentence before or after it, or use a slightly different shape; the
check tolerates those and rejects what a training row cannot use: no JSON, the wrong number of pairs, empty
fields, or pairs that repeat a genre or an audience. It never picks between answers: JSON that starts but does
not decode (cut at max_tokens, or malformed) is "truncated or malformed JSON", two different lists of pairs in
one answer are "conflicting JSON answers", and a genre or audience that is the prompt's own placeholder
("<2-3 sentences>") is refused (what small models write: tests/fixtures/real_answers).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from mga.distill.core.io import read_rows, write_rows

_PUNCT = str.maketrans({c: " " for c in string.punctuation + "，。、；：！？（）【】《》“”‘’"})
_GENRE_KEYS = ("genre", "genres", "体裁", "类型", "文体")
_AUDIENCE_KEYS = ("audience", "audiences", "受众", "读者")


def normalise(text: str) -> str:
    """casefold, punctuation to spaces, whitespace collapsed: what 'distinct' compares."""
    return " ".join(text.casefold().translate(_PUNCT).split())


_JSON_START = re.compile(r"[\[{]\s*[\"\[{]")  # where JSON (not a stray bracket in prose) seems to begin
_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _json_spans(text: str) -> list[tuple[int, Any]]:
    """(start, value) of every top-level JSON object or array in `text`, in order."""
    decoder = json.JSONDecoder()
    try:
        return [(0, json.loads(text))]
    except json.JSONDecodeError:
        pass
    spans = []
    covered = 0  # starts inside an already decoded value are nested in it: skip them
    for match in re.finditer(r"[\[{]", text):
        if match.start() < covered:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        covered = end
        spans.append((match.start(), value))
    return spans


def json_values(text: str) -> list[Any]:
    """Every top-level JSON object or array in `text`, in order (fences and surrounding prose ignored)."""
    return [value for _, value in _json_spans(text.strip())]


def extract_json(text: str) -> Any:
    """The outermost JSON object or array in `text` (the longest one), else None."""
    values = json_values(text)
    return max(values, key=lambda v: len(json.dumps(v, ensure_ascii=False))) if values else None


def _broken_json(text: str) -> str | None:
    """The reason when the answer's JSON starts and does not decode (cut at max_tokens, or malformed) before
    any JSON that does: what decodes after it is a piece of the broken whole."""
    spans = _json_spans(text)
    for start in _JSON_START.finditer(text):
        if spans and start.start() >= spans[0][0]:
            return None
        try:
            json.JSONDecoder().raw_decode(text, start.start())
        except json.JSONDecodeError as e:
            return f"truncated or malformed JSON at character {start.start()}: {e.msg}"
    return None


def _field(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().casefold(): v for k, v in item.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _describe(value: Any) -> str | None:
    """A genre/audience as one string; a small dict of descriptive parts ({name, description}) is joined."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return ": ".join(v.strip() for v in value.values() if v.strip())
    return None


def _candidate_pairs(data: Any) -> tuple[list[Any] | None, str | None]:
    """Accepted shapes: [{genre, audience}...], {"pairs": [...]}, {"genres": [...], "audiences": [...]}."""
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key).casefold() in ("pairs", "genre_audience_pairs", "items", "results") and isinstance(value, list):
                return value, None
        genres, audiences = _field(data, _GENRE_KEYS), _field(data, _AUDIENCE_KEYS)
        if isinstance(genres, list) and isinstance(audiences, list):
            if len(genres) != len(audiences):
                return None, f"{len(genres)} genres but {len(audiences)} audiences"
            return [{"genre": g, "audience": a} for g, a in zip(genres, audiences)], None
        if len(data) == 1 and isinstance(next(iter(data.values())), list):
            return next(iter(data.values())), None
    return None, 'JSON has no list of pairs (expected {"pairs": [{"genre": ..., "audience": ...}, ...]})'


# Longest genre or audience description a schema allows: the teacher labels' are under 200 characters; the
# bound stops a small model that loops inside one description (measured on SmolLM2, docs/labeling.md).
MAX_DESCRIPTION_CHARS = 400


def pairs_json_schema(num_pairs: int = 5) -> dict[str, Any]:
    """The JSON schema of a stage-1 answer, for constrained decoding: `{"pairs": [num_pairs x {genre, audience}]}`.

    It fixes the shape and bounds the length; it cannot make pairs distinct or meaningful, so `parse_pairs`
    still checks every answer."""
    text = {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_CHARS}
    pair = {"type": "object", "properties": {"genre": text, "audience": text}, "required": ["genre", "audience"],
            "additionalProperties": False}
    return {"type": "object", "properties": {"pairs": {"type": "array", "items": pair, "minItems": num_pairs,
                                                       "maxItems": num_pairs}},
            "required": ["pairs"], "additionalProperties": False}


def parse_pairs(text: str, num_pairs: int = 5) -> tuple[list[dict[str, str]] | None, str | None]:
    """`(pairs, None)` with exactly `num_pairs` distinct {"genre", "audience"} dicts, or `(None, reason)`; a
    refused answer whose JSON broke off is refused as truncated or malformed JSON."""
    if not text or not text.strip():
        return None, "empty answer"
    pairs, reason = _parse_pairs(text.strip(), num_pairs)
    return (pairs, None) if reason is None else (None, _broken_json(text.strip()) or reason)


def _parse_pairs(text: str, num_pairs: int) -> tuple[list[dict[str, str]] | None, str | None]:
    values = json_values(text)
    if not values:
        return None, "no JSON object or array in the answer"
    lists = {json.dumps(items, sort_keys=True, ensure_ascii=False) for value in values
             if (items := _candidate_pairs(value)[0]) and all(isinstance(item, dict) for item in items)}
    if len(lists) > 1:
        return None, f"conflicting JSON answers ({len(lists)} different lists of pairs)"
    items, reason = _candidate_pairs(extract_json(text))
    if items is None:
        return None, reason
    if len(items) != num_pairs:
        return None, f"{len(items)} pairs instead of {num_pairs}"
    pairs = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            return None, f"pair {number} is not an object with genre and audience"
        genre, audience = _describe(_field(item, _GENRE_KEYS)), _describe(_field(item, _AUDIENCE_KEYS))
        if not genre:
            return None, f"pair {number} has no genre"
        if not audience:
            return None, f"pair {number} has no audience"
        for field, value in (("genre", genre), ("audience", audience)):
            if _PLACEHOLDER.fullmatch(value):
                return None, f"pair {number}: the {field} is a placeholder ({value[:40]}), not a description"
        pairs.append({"genre": genre, "audience": audience})
    for field in ("genre", "audience"):
        seen: dict[str, int] = {}
        for number, pair in enumerate(pairs, 1):
            norm = normalise(pair[field])
            if norm in seen:
                return None, f"pair {number} repeats the {field} of pair {seen[norm]}"
            seen[norm] = number
    return pairs, None


def check_pairs_file(pairs: Path, kept: Path, rejected: Path, num_pairs: int = 5) -> dict[str, int]:
    """The stage-1 rule check over a labels file: rows with exactly `num_pairs` valid, distinct pairs go to
    `kept`; the others go to `rejected` with their reason (a failed request keeps the request's reason)."""
    good, bad = [], []
    for row in read_rows(pairs):
        reason = row.get("reason") if row.get("status") != "ok" else None
        if reason is None:
            _, reason = parse_pairs(json.dumps({"pairs": row.get("pairs") or []}), num_pairs)
        (bad if reason else good).append({**row, "reason": reason} if reason else row)
    write_rows(kept, good)
    write_rows(rejected, bad)
    return {"rows_in": len(good) + len(bad), "rows_out": len(good)}
