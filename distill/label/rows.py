"""Stage-1 and stage-2 jobs, requests and output rows: one definition for `labeling` and the Ray executor.

A job is what one row needs: the digest of its source (`source_digest`), the digest of everything that
produces it (`digest`: rendered prompt, generation parameters, model; see `mga.distill.core.resume`), its
messages and its meta. Rows carry both digests, the attempts, and every answer validation rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mga.distill.core.config import GenerationParams
from mga.distill.core.prompts import boundary, pairs_messages, rewrite_messages
from mga.distill.core.resume import content_digest
from mga.distill.core.schema import OK, pairs_row, rewrite_row
from mga.distill.generate.protocol import Completion, Request, Result
from mga.distill.label.answer_checks import rewrite_check
from mga.judge.monitors import rewrite_monitors
from mga.judge.pairs_check import pairs_json_schema, parse_pairs

FAILED, TRUNCATED, EMPTY, REJECTED = "failed", "truncated", "empty", "rejected"


@dataclass(frozen=True)
class Job:
    source_digest: str
    digest: str
    messages: list[dict[str, str]]
    meta: dict[str, Any]
    nonce: str = ""


def request_digest(messages: list[dict[str, str]], params: GenerationParams, model: str) -> str:
    """What produced a row: the rendered prompt (input text included), the generation parameters, the model."""
    return content_digest(messages, params.model_dump(mode="json"), model)


def usage_fields(completion: Completion | None) -> dict[str, Any]:
    """Finish reason and token counts of a row."""
    return {
        "finish_reason": completion.finish_reason if completion else None,
        "prompt_tokens": completion.prompt_tokens if completion else 0,
        "completion_tokens": completion.completion_tokens if completion else 0,
    }


def failure_reason(result: Result) -> str | None:
    """A failed request's reason, with the reasons of earlier attempts."""
    if result.error is None:
        return None
    if len(result.history) > 1:
        return f"{result.error} (after {result.attempts} attempts: {' | '.join(result.history)})"
    return result.error


def _provenance(job: Job, result: Result) -> dict[str, Any]:
    return {"attempts": result.attempts, "rejected": result.rejected, "source_digest": job.source_digest,
            "digest": job.digest}


def pairs_job(meta: dict[str, Any], language: str, num_pairs: int, params: GenerationParams, model: str) -> Job:
    messages = pairs_messages(meta["raw_text"], language, num_pairs)
    return Job(content_digest(meta["raw_text"]), request_digest(messages, params, model), messages, meta)


def pairs_request(key: str, job: Job, params: GenerationParams, num_pairs: int) -> Request:
    """A stage-1 request, carrying the answer's JSON schema for structured output (`params.structured_output`)."""
    return Request(key, job.messages, params, schema=pairs_json_schema(num_pairs))


def pairs_validator(num_pairs: int) -> Callable[[Completion], tuple[Any, str | None]]:
    """Stage-1 answer validation (`parse_pairs`: JSON with exactly `num_pairs` distinct pairs); an invalid answer
    is asked again."""
    return lambda completion: parse_pairs(completion.text, num_pairs)


def pairs_result_row(job: Job, result: Result, model: str) -> dict[str, Any]:
    """The stage-1 row of one answered request (a failed one keeps its reason and raw answer)."""
    completion = result.completion
    return pairs_row(job.meta, result.parsed if result.ok else [], status=OK if result.ok else FAILED,
                     reason=failure_reason(result), model=model, usage=usage_fields(completion),
                     raw_output=completion.text if completion else None, **_provenance(job, result))


def rewrite_job(meta: dict[str, Any], variant: str, language: str, params: GenerationParams, model: str) -> Job:
    data = (meta["raw_text"], meta["genre"], meta["audience"])
    messages = rewrite_messages(*data, variant, language)
    return Job(content_digest(*data), request_digest(messages, params, model), messages, meta, boundary(*data))


def rewrite_request(key: str, job: Job, params: GenerationParams, language: str) -> Request:
    """A stage-2 request whose answers go through the stage-2 answer checks."""
    data = (job.meta["genre"], job.meta["audience"])
    check = rewrite_check(job.meta["raw_text"], job.messages, job.nonce, language, data)
    return Request(key, job.messages, params, check=check)


def rewrite_status(result: Result, max_tokens: int) -> tuple[str, str | None]:
    """(status, reason) of a rewrite: ok, failed, empty, rejected by the answer checks (after every attempt),
    or truncated at max_tokens (marked, never dropped)."""
    completion = result.completion
    if completion is None:
        return FAILED, result.error
    if not completion.text.strip():
        return EMPTY, f"the teacher returned no text (finish_reason={completion.finish_reason})"
    if result.error is not None:
        return REJECTED, failure_reason(result)
    if completion.finish_reason == "length":
        return TRUNCATED, f"the answer hit max_tokens={max_tokens} and was cut off"
    return OK, None


def rewrite_result_row(job: Job, result: Result, variant: str, model: str, max_tokens: int) -> dict[str, Any]:
    """The stage-2 row of one answered request (a rejected answer is kept in `rejected`, not as the rewrite).

    A rewrite's quality figures against its source (`mga.judge.monitors`) go into `meta.monitors`, here, so
    teacher labels, SLM answers and `mga expand` rows all carry them."""
    status, reason = rewrite_status(result, max_tokens)
    completion = result.completion
    text = completion.text if completion and status != REJECTED else ""
    meta = {**job.meta, "monitors": rewrite_monitors(job.meta["raw_text"], text)} if text.strip() else job.meta
    return rewrite_row(meta, text, variant=variant,
                       status=status, reason=reason, model=model, usage=usage_fields(completion),
                       **_provenance(job, result))
