"""The LLM judge: one Limited-Consistency call per (original, rewrite), through any `Generator`.

Answers go through `mga.judge.parse.parse_judgement`; an answer it refuses is asked again (the Generator's
validate/max_attempts loop, a new request each time) and, after `max_parse_attempts`, stored as
`unscored` with the reason, so reports count it as a failure. Judged rows stream to the output; a rerun
keeps a verdict only for the same original, rewrite, judge prompt, parameters and model (`judge.digest`, see
`mga.distill.core.resume`) and judges the others again.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

from mga.distill.core.config import GenerationParams
from mga.distill.core.console import console
from mga.distill.core.io import JsonlAppender, finalize_stream, read_rows
from mga.distill.core.prompts import judge_messages
from mga.distill.core.resume import content_digest, resume_stream
from mga.distill.core.schema import rewrite_key, unjudgeable_reason
from mga.distill.generate.protocol import Completion, Generator, Request, Result
from mga.judge.parse import parse_judgement, unscored_verdict
from mga.judge.parse import verdict as scored_verdict

BACKEND = "llm"
# the score value in the answer: JSON `"score": "4"` or a prose `Score: 4` line
_SCORE_AT = re.compile(r"(?:\"score\"|score|评分|得分|分数)\s*[:：=]\s*\"?\**\s*$", re.IGNORECASE)


# The verdict the shipped judge prompts ask for: {"analysis": "...", "score": 1..5}, analysis first so that a
# constrained model writes its steps before the score. `parse_judgement` reads it like any other JSON verdict.
VERDICT_SCHEMA = {"type": "object", "properties": {"analysis": {"type": "string"},
                                                   "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}},
                  "required": ["analysis", "score"], "additionalProperties": False}


def validate(completion: Completion) -> tuple[dict | None, str | None]:
    return parse_judgement(completion.text)


@functools.cache
def verdict_schema(language: str) -> dict[str, Any] | None:
    """The schema of the judge's answer when the language's judge prompt asks for the JSON verdict (every shipped
    pack does), else None: a pack whose prompt asks for a `Score: N` line gets no schema that contradicts it."""
    instructions = judge_messages("", "", language)[-1]["content"]
    return VERDICT_SCHEMA if '"analysis"' in instructions and '"score"' in instructions else None


def judge_request(key: str, messages: list[dict[str, str]], params: GenerationParams, language: str,
                  logprobs: bool = False) -> Request:
    """One judge call, with the verdict's schema for structured output (`params.structured_output`)."""
    return Request(key=key, messages=messages, params=params, logprobs=logprobs, schema=verdict_schema(language))


def weighted_score(logprobs: list[dict[str, Any]] | None) -> float | None:
    """Probability-weighted score over the tokens "1".."5" at the score position, from top_logprobs.

    The score position is the first digit token after the last `"score":` (or `Score:`) in the answer;
    None without logprobs, without a score position or without any 1-5 token among its alternatives."""
    if not logprobs:
        return None
    text, position = "", None
    for index, entry in enumerate(logprobs):
        token = entry.get("token") or ""
        if token.strip()[:1].isdigit() and _SCORE_AT.search(text):
            position = index
        text += token
    if position is None:
        return None
    entry = logprobs[position]
    alternatives = entry.get("top_logprobs") or [{"token": entry.get("token"), "logprob": entry.get("logprob")}]
    mass: dict[int, float] = {}
    for alt in alternatives:
        token = (alt.get("token") or "").strip()
        if token in {"1", "2", "3", "4", "5"} and alt.get("logprob") is not None:
            mass[int(token)] = mass.get(int(token), 0.0) + math.exp(alt["logprob"])
    total = sum(mass.values())
    return round(sum(k * p for k, p in mass.items()) / total, 4) if total > 0 else None


def _verdict(result: Result, model: str) -> dict[str, Any]:
    if not result.ok:
        verdict = unscored_verdict(result.error or "no answer", BACKEND, model)
    else:
        parsed = result.parsed
        verdict = scored_verdict(parsed["score"], parsed["analysis"], BACKEND, model,
                                 weighted_score(result.completion.logprobs))
    verdict["attempts"] = result.attempts
    verdict["history"] = list(result.history)
    return verdict


def judge_rows(
    in_path: str | Path | list[dict[str, Any]],
    out_path: str | Path,
    generator: Generator,
    *,
    language: str = "en",
    params: GenerationParams | None = None,
    max_parse_attempts: int = 3,
    logprobs: bool = False,
) -> Path:
    """Judge every rewrite row of `in_path` (a file or rows) into `out_path` (resumable); returns `out_path`."""
    out_path = Path(out_path)
    params = params or GenerationParams(temperature=0.0, max_tokens=2048)
    rows = in_path if isinstance(in_path, list) else read_rows(in_path)
    model = getattr(generator, "model_id", None)
    prompts = {rewrite_key(r): judge_messages(r["meta"]["raw_text"], r.get("content_split") or "", language) for r in rows}
    digests = {rewrite_key(r): content_digest(prompts[rewrite_key(r)], params.model_dump(mode="json"), model, logprobs,
                                              r.get("status")) for r in rows}
    # resume by content: a verdict is reused only for the same original, rewrite, judge prompt, params and model
    resumed = resume_stream(out_path, rewrite_key, digests, None, digest_of=lambda row: (row.get("judge") or {}).get("digest"))
    work, done = resumed.stream, resumed.done
    todo = {rewrite_key(r): r for r in rows if rewrite_key(r) not in done}
    if done or resumed.changed or resumed.gone:
        console.print(f"judge: resuming, {len(done)} of {len(rows)} rows already judged{resumed.describe()}", markup=False)

    with JsonlAppender(work) as out:
        for key, row in list(todo.items()):  # failed generations are judged without a call
            reason = unjudgeable_reason(row)
            if reason:
                out.write({**row, "judge": {**unscored_verdict(reason, BACKEND, model), "attempts": 0, "history": [],
                                            "digest": digests[key]}})
                del todo[key]
        requests = [judge_request(key, prompts[key], params, language, logprobs) for key in todo]
        if requests:
            for result in generator.run(requests, validate=validate, max_attempts=max_parse_attempts, description="judge"):
                key = result.request.key
                out.write({**todo[key], "judge": {**_verdict(result, model), "digest": digests[key]}})
    finalize_stream(out_path, work, [rewrite_key(r) for r in rows], rewrite_key)  # input order
    return out_path
