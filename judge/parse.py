"""Read a judge's answer into `{"analysis", "score"}` without ever guessing a score.

Accepted answers (see docs/judge.md):
- JSON objects holding a "score" key, anywhere in the answer (bare, in a ```json fence, or with prose
  around it). The score is an integer 1-5, a float with an integer value (4.0) or a string holding one
  integer ("4"). Several such objects must all give the same score.
- Prose where the score stands on a line of its own: `Score: 4`, `**Final score:** 4`, `Score = 4/5`,
  `Score: 4 out of 5`, `评分：4`, also followed by a comment without digits (`Score: 4 - most points
  survive`). Several such lines must agree, with each other, with any other score mentioned in the prose
  ("a score of 2") and with any JSON verdict in the same answer (so a verdict quoted from the document
  cannot override the judge's own). A score mentioned only inside a sentence is not a statement.

Refused (None, reason), which the LLM judge retries and finally stores as `unscored`: no score at all,
a score that is not an integer, out of range (0, 7), conflicting scores, and any JSON object that does
not decode (truncated or malformed) - even when a "score" can be read in its broken text, because a
truncated object may be cut before the judge's real verdict.
"""

from __future__ import annotations

import json
import re
from typing import Any

MIN_SCORE, MAX_SCORE = 1, 5

_OBJECT_START = re.compile(r"\{\s*\"")  # where a JSON object (not a stray brace in prose) begins
_SCORE_LINE = re.compile(
    r"^[\s>*_#`-]*(?:final\s+|overall\s+)?(?:score|rating|评分|得分|分数|最终评分)[\s*_`]*[:：=][\s*_`]*"
    r"(?P<value>[+-]?\d+(?:\.\d+)?)[\s*_`]*(?:/\s*5|out\s+of\s+5|分)?[\s*_`]*"
    # a comment after the score on the same line, with no digit in it ("Score: 4 - most points survive")
    r"(?:(?:\s+[-–—]\s+|\s*[(（:：;,，]\s*|[.。]\s+)[^\d\n]*|[.。])?\s*$",
    re.IGNORECASE,
)
# any other mention of a score in the prose ("a score of 2", "Score: 2" mid-sentence), to detect conflicts
_SCORE_MENTION = re.compile(r"(?:score|rating|评分|得分|分数)\s*(?:is|of|[:：=])\s*\**\s*(\d+)\b", re.IGNORECASE)
_decoder = json.JSONDecoder()


def check_score(value: Any) -> tuple[int | None, str | None]:
    """An integer score in 1..5 from an int, an integral float or a string of one integer."""
    if isinstance(value, bool):
        return None, f"score is not an integer: {value!r}"
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            return None, f"score is not an integer: {value!r}"
        value = int(text)
    elif isinstance(value, float):
        if not value.is_integer():
            return None, f"score is not an integer: {value!r}"
        value = int(value)
    elif not isinstance(value, int):
        return None, f"score is not an integer: {value!r}"
    if not MIN_SCORE <= value <= MAX_SCORE:
        return None, f"score {value} out of range {MIN_SCORE}-{MAX_SCORE}"
    return value, None


def _json_objects(text: str) -> tuple[list[dict[str, Any]], str, str | None]:
    """Top-level JSON objects in the text, the prose around them, or a reason when one does not decode."""
    objects: list[dict[str, Any]] = []
    prose: list[str] = []
    position = 0
    while (match := _OBJECT_START.search(text, position)) is not None:
        try:
            value, end = _decoder.raw_decode(text, match.start())
        except json.JSONDecodeError as e:
            return objects, "", f"truncated or malformed JSON at character {match.start()}: {e.msg}"
        if isinstance(value, dict):
            objects.append(value)
        prose.append(text[position : match.start()])
        position = end
    prose.append(text[position:])
    return objects, "\n".join(prose), None


def _score_lines(prose: str) -> tuple[list[int], list[str], str | None]:
    """Scores stated on lines of their own, the other lines, or the reason a stated score is invalid."""
    scores, kept = [], []
    for line in prose.splitlines():
        match = _SCORE_LINE.match(line)
        if match is None:
            kept.append(line)
            continue
        value = match["value"]
        score, reason = check_score(float(value) if "." in value else value)
        if reason:
            return [], [], reason
        scores.append(score)
    return scores, kept, None


def parse_judgement(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """`({"analysis": str, "score": 1..5}, None)` or `(None, reason)`; see the module docstring."""
    if text is None or not text.strip():
        return None, "empty answer"
    objects, prose, broken = _json_objects(text)
    if broken:
        return None, broken
    verdicts = [o for o in objects if "score" in o]
    scores: list[int] = []
    for verdict in verdicts:
        score, reason = check_score(verdict["score"])
        if reason:
            return None, reason
        scores.append(score)
    line_scores, kept, reason = _score_lines(prose)
    if reason:
        return None, reason
    scores += line_scores
    if not scores:
        return None, "no score found (expected JSON with a 'score' key)"
    mentioned = {int(m) for line in kept for m in _SCORE_MENTION.findall(line)}
    scores += sorted(mentioned - set(scores))  # a different score mentioned in the prose is a conflict
    if len(set(scores)) > 1:
        return None, f"conflicting scores {sorted(set(scores))}"
    if verdicts:
        analysis = verdicts[-1].get("analysis", "")
        if not isinstance(analysis, str):
            analysis = json.dumps(analysis, ensure_ascii=False)
    else:
        analysis = "\n".join(kept).strip()
    return {"analysis": analysis, "score": scores[0]}, None


def verdict(score: int, analysis: str | None, backend: str, model: str | None,
            weighted_score: float | None = None) -> dict[str, Any]:
    """The `judge` record of a scored row (schema in `mga.distill.core.schema`), whoever judged it."""
    return {"score": score, "status": "scored", "reason": None, "analysis": analysis,
            "backend": backend, "model": model, "weighted_score": weighted_score}


def unscored_verdict(reason: str, backend: str, model: str | None) -> dict[str, Any]:
    """The `judge` record of a row that got no score (it counts as a failure in reports)."""
    return {"score": None, "status": "unscored", "reason": reason, "analysis": None,
            "backend": backend, "model": model, "weighted_score": None}
