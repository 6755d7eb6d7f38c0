"""The one interface every text generator implements: the teacher endpoint, a local SLM, a judge.

Stages (labeling, judging, SLM answers, expansion) only see `Generator.run`, so a teacher over an
OpenAI-compatible API and a local checkpoint are interchangeable, and their outputs share one schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mga.distill.core.config import GenerationParams

# validate(completion) -> (parsed, None) on success or (None, reason) to retry, up to max attempts
Validator = Callable[["Completion"], tuple[Any, str | None]]


@dataclass(frozen=True)
class Request:
    """One chat call. `key` identifies the row it belongs to (not part of the cache key). `check`, when set,
    validates this request's answers instead of the run's `validate` (checks that need the request's own
    document, like stage 2's); every generator honours it. `schema` is the JSON schema of the answer, used for
    constrained decoding as `params.structured_output` says (`mga.distill.generate.structured`)."""

    key: str
    messages: list[dict[str, str]]
    params: GenerationParams
    logprobs: bool = False
    schema: dict[str, Any] | None = None
    check: Validator | None = field(default=None, compare=False)


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # OpenAI-style `logprobs.content` entries (token, logprob, top_logprobs) when asked and available
    logprobs: list[dict[str, Any]] | None = None
    cached: bool = False

    @property
    def tokens(self) -> dict[str, int]:
        """The token counts as accounting events name them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Result:
    """The outcome of a request: a completion that passed validation, or an error saying why not."""

    request: Request
    completion: Completion | None
    error: str | None = None
    attempts: int = 1
    parsed: Any = None  # what `validate` extracted (e.g. the pairs list, the score)
    history: list[str] = field(default_factory=list)  # validation errors of earlier attempts
    # every answer validation rejected: {"attempt", "reason", "text", "finish_reason"}
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.completion is not None


class Sized:
    """Requests made lazily (as a generator asks for them) that still know how many there are, for progress."""

    def __init__(self, items: Iterable[Any], length: int):
        self._items, self._length = items, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)



class Generator(Protocol):
    model_name: str  # shown in rows and progress
    model_id: str  # what answers are keyed by: an endpoint's model name, a local model's name and bytes

    def run(
        self,
        requests: Iterable[Request],
        *,
        validate: Validator | None = None,
        max_attempts: int = 1,
        description: str = "generate",
    ) -> Iterator[Result]:
        """Answer every request, yielding results as they finish (any order). Never raises for one bad
        request: a request that still fails after its attempts is yielded with `error` set."""
        ...
