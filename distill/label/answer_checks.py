"""Stage-2 answer checks: is this answer a rewrite at all?

A teacher sometimes answers a rewrite prompt with something else: JSON (a stage-1 habit), a judge-style
verdict, the document or the prompt copied back, or only boilerplate ("Sure! Here is the rewrite:"). Such an
answer is rejected with a reason and asked again, like a malformed stage-1 answer; what stays rejected is
kept in the row and in the `rejected` file. Truncated answers are not rejected here: they are kept and
marked `truncated` by the labeling stage.

"Copied the prompt" is measured, not guessed: the answer holds the data blocks' boundary nonce, or one of the
prompt's own sentences (system or user message, at least `MIN_PROMPT_SENTENCE_CHARS` long, the document, the
genre and the audience taken out), as small models do (tests/fixtures/real_answers: SmolLM2 answering the
Strict prompt with its system message's "The document you are given is material to polish; ...").
"""

from __future__ import annotations

import json
import re
from typing import Any

from mga.distill.generate.protocol import Completion, Validator
from mga.judge.filters import clean_rewrite

_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.S)
_VERDICT_JSON = re.compile(r"\"score\"\s*:\s*\"?[1-5]\b")
_VERDICT_LINE = re.compile(r"^\W*(score|rating|评分|得分|分数)\W*\s*[:：=]\s*[1-5](\s*/\s*5)?\W*$", re.I)
_SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])\s+|\n")
MIN_PROMPT_SENTENCE_CHARS = 24  # shorter sentences ("Genre:", "Output only the text.") may recur in any text


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _is_json(text: str) -> bool:
    body = text.strip()
    if (fenced := _FENCE.match(body)) is not None:
        body = fenced.group(1).strip()
    if body[:1] not in "{[":
        return False
    try:
        return isinstance(json.loads(body), dict | list)
    except ValueError:
        return False


def prompt_sentences(prompt: str, nonce: str, data: tuple[str, ...] = ()) -> list[str]:
    """The prompt's own sentences, normalised: its fenced data blocks (`nonce`) and the `data` values (document,
    genre, audience) taken out, each long enough to be specific to the prompt."""
    fenced = re.compile(rf"<([\w-]+)-{re.escape(nonce)}>.*?</\1-{re.escape(nonce)}>", re.S)
    text = fenced.sub("\n", prompt) if nonce else prompt
    for value in data:
        if value.strip():
            text = text.replace(value, "\n")
    inside = {_norm(value) for value in data}
    sentences = (_norm(s) for s in _SENTENCE_END.split(text) if s)
    return [s for s in dict.fromkeys(sentences)
            if len(s) >= MIN_PROMPT_SENTENCE_CHARS and not any(s in value for value in inside)]


def rewrite_problem(text: str, document: str, prompt: str, nonce: str, language: str = "en",
                    data: tuple[str, ...] = ()) -> str | None:
    """Why `text` is not a rewrite of `document` (asked with the messages' text `prompt`, whose data values
    besides the document are `data`: genre, audience), or None."""
    if not text.strip():
        return "empty answer"
    cleaned, removed = clean_rewrite(text, language, original=document)
    if not cleaned.strip():
        return f"only boilerplate ({len(removed)} line(s), e.g. {removed[0][:60]!r})"
    if _is_json(cleaned):
        return "the answer is JSON, not a rewrite"
    lines = [line for line in cleaned.splitlines() if line.strip()]
    if _VERDICT_JSON.search(cleaned) or (lines and _VERDICT_LINE.match(lines[-1].strip())):
        return "the answer is a judge-style verdict (a score), not a rewrite"
    if _norm(cleaned) == _norm(document):
        return "the answer is a copy of the document"
    answer = _norm(cleaned)
    if nonce in text or any(s in answer for s in prompt_sentences(prompt, nonce, (document, *data))):
        return "the answer repeats the prompt"
    return None


def rewrite_check(document: str, messages: list[dict[str, str]], nonce: str, language: str = "en",
                  data: tuple[str, ...] = ()) -> Validator:
    """The per-request validator of one stage-2 request (`Request.check`); `data`: the genre and audience."""
    prompt = "\n".join(str(m.get("content") or "") for m in messages)

    def check(completion: Completion) -> tuple[Any, str | None]:
        return None, rewrite_problem(completion.text, document, prompt, nonce, language, data)

    return check
