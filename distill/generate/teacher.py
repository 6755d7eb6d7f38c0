"""The teacher: any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, llama.cpp) as a `Generator`.

Requests run on an asyncio loop in a background thread over the official `AsyncOpenAI` client (its own
retries off): a fixed pool of `concurrency` workers, a per-request timeout, retries with exponential backoff
and jitter that honour `Retry-After`, optional requests/tokens-per-minute budgets, and a cache that makes
reruns free. `run()` is a plain iterator yielding results as they finish. A wrong key, an unknown model or an
unreachable endpoint ends the run with one `MgaError` line instead of one error per row. The API key never
leaves the client: errors are scrubbed of it and the cache does not store it.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mga.distill.core.config import TeacherConfig
from mga.distill.core.console import progress_task
from mga.distill.core.errors import MgaError
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.cache import RequestCache, request_key
from mga.distill.generate.protocol import (
    Completion,
    Generator,
    Request,
    Result,
    Validator,
)
from mga.distill.generate.ratelimit import TokenBucket, estimate_tokens

_DONE = object()
_RETRYABLE_STATUS = {408, 409, 425, 429}
_KEY_PATTERN = re.compile(r"\b(sk|key|token)-[A-Za-z0-9_\-*]{6,}")


class TeacherUnavailable(MgaError):
    """The endpoint cannot serve this run at all (wrong key, unknown model, unreachable host)."""


def _display_url(url: str | None) -> str:
    """The endpoint for messages, without any user:password part."""
    if not url:
        return "https://api.openai.com/v1 (default)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` in seconds or as a date)."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            date = email.utils.parsedate_to_datetime(value)
            return max(0.0, date.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _RunState:
    """What the consumer thread needs to stop the loop thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.stopped = threading.Event()


class OpenAIGenerator:
    """`Generator` over an OpenAI-compatible endpoint; see the module docstring."""

    def __init__(
        self,
        cfg: TeacherConfig,
        *,
        cache: RequestCache | None = None,
        accounting: Accounting | None = None,
        stage: str = "label",
    ):
        self.cfg = cfg
        self.model_name = cfg.model
        self.cache = cache
        self.accounting = accounting if accounting is not None else Accounting.for_teacher(cfg)
        self.stage = stage
        self.counters = self.accounting.stage(stage)
        self.base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.url = _display_url(self.base_url)
        if cfg.api_key is not None:
            self._api_key = cfg.api_key.get_secret_value()
        else:
            self._api_key = os.environ.get(cfg.api_key_env) or ""
        if not self._api_key:
            if self.base_url is None:
                raise MgaError(
                    f"no API key for OpenAI: set ${cfg.api_key_env}, or teacher.base_url for a local server"
                )
            self._api_key = "EMPTY"  # local servers (vLLM, Ollama, llama.cpp) accept any key
        self._any_success = False
        self._any_cached = False
        self._early_failures = 0

    # ---- helpers -------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != "EMPTY" and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return _KEY_PATTERN.sub(lambda m: m.group(1) + "-***", text)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    def _kwargs(self, request: Request) -> dict[str, Any]:
        p = request.params
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": request.messages,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if p.seed is not None:
            kwargs["seed"] = p.seed
        if p.n != 1:
            kwargs["n"] = p.n
        if request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 5
        return kwargs

    def _final_failure(self, reason: str, *, unreachable: bool) -> None:
        """Fail the whole run when requests keep failing before any has succeeded (cached answers count as
        successes for refused requests, not for an unreachable endpoint)."""
        if self._any_success or (self._any_cached and not unreachable):
            return
        self._early_failures += 1
        if unreachable or self._early_failures >= self.cfg.fail_fast_after:
            what = "cannot reach the teacher" if unreachable else f"the first {self._early_failures} requests failed"
            raise TeacherUnavailable(f"{what} at {self.url} (model '{self.model_name}'): {reason}")

    # ---- one request ---------------------------------------------------------------------------------------

    async def _call(self, client: Any, request: Request, limits: tuple) -> tuple[Completion | None, str | None]:
        """One answer from the endpoint, with retries on transient errors: (completion, None) or (None, why)."""
        import openai

        rpm, tpm = limits
        kwargs = self._kwargs(request)
        reason = "no attempt made"
        unreachable = False
        for attempt in range(1, self.cfg.max_attempts + 1):
            if rpm is not None:
                await rpm.acquire(1)
            if tpm is not None:
                await tpm.acquire(estimate_tokens(request.messages))
            self.counters.requests += 1
            delay = None
            try:
                response = await client.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                reason, unreachable = f"no answer within {self.cfg.timeout_s:g}s (timeout)", False
            except openai.APIConnectionError as e:
                cause = e.__cause__ or e
                reason = self._redact(f"connection error: {cause.__class__.__name__}: {cause}".rstrip(": "))
                unreachable = True
            except openai.APIStatusError as e:
                status = e.status_code
                message = self._redact(str(getattr(e, "message", e)))[:300]
                if status in (401, 403):
                    raise TeacherUnavailable(
                        f"the teacher at {self.url} refused the API key ({status}); check ${self.cfg.api_key_env} "
                        f"or teacher.api_key"
                    ) from None
                if status == 404:
                    raise TeacherUnavailable(
                        f"the teacher at {self.url} has no model '{self.model_name}' or no chat endpoint (404): {message}"
                    ) from None
                reason, unreachable = f"HTTP {status}: {message}", False
                if status not in _RETRYABLE_STATUS and status < 500:
                    self._final_failure(reason, unreachable=False)
                    return None, f"the teacher refused the request ({reason})"
                delay = _retry_after(e.response)
            except openai.OpenAIError as e:  # unparseable body and the like: worth another try
                reason, unreachable = self._redact(f"{e.__class__.__name__}: {e}")[:300], False
            else:
                completion = self._completion(response, request)
                if completion is not None:
                    self._any_success = True
                    if tpm is not None:
                        tpm.charge(completion.completion_tokens)
                    return completion, None
                reason, unreachable = "the answer had no choices", False
            if attempt < self.cfg.max_attempts:
                self.counters.retries += 1
                wait = self._backoff(attempt) if delay is None else min(delay, 600.0) * (1 + random.random() / 10)
                await asyncio.sleep(wait)
        self._final_failure(reason, unreachable=unreachable)
        return None, f"gave up after {self.cfg.max_attempts} attempts: {reason}"

    def _completion(self, response: Any, request: Request) -> Completion | None:
        if not getattr(response, "choices", None):
            return None
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        self.counters.prompt_tokens += prompt_tokens
        self.counters.completion_tokens += completion_tokens
        logprobs = None
        if request.logprobs and choice.logprobs is not None and choice.logprobs.content:
            logprobs = [entry.model_dump() for entry in choice.logprobs.content]
        return Completion(
            text=(choice.message.content if choice.message else None) or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            logprobs=logprobs,
        )

    async def _answer(
        self, client: Any, request: Request, validate: Validator | None, max_attempts: int, limits: tuple
    ) -> Result:
        """A validated answer: each rejected answer is followed by a new request (a new cache key)."""
        history: list[str] = []
        completion: Completion | None = None
        reason: str | None = None
        attempts = max(1, max_attempts if validate is not None else 1)
        for attempt in range(attempts):
            key = request_key(self.model_name, request, attempt) if self.cache is not None else None
            completion = self.cache.get(key) if key is not None else None
            if completion is not None:
                self.counters.cache_hits += 1
                self._any_cached = True
            else:
                completion, error = await self._call(client, request, limits)
                if completion is None:
                    return Result(request, None, error=error, attempts=attempt + 1, history=history)
                if key is not None:
                    self.cache.put(key, completion, self.model_name)
            if validate is None:
                return Result(request, completion, attempts=attempt + 1)
            try:
                parsed, reason = validate(completion)
            except Exception as e:  # a validator bug must not kill the run
                parsed, reason = None, f"validator error: {e.__class__.__name__}: {e}"
            if reason is None:
                return Result(request, completion, attempts=attempt + 1, parsed=parsed, history=history)
            self.counters.invalid += 1
            history.append(reason)
        return Result(request, completion, error=reason, attempts=attempts, history=history)

    # ---- the loop ------------------------------------------------------------------------------------------

    async def _main(
        self, requests: Iterator[Request], validate: Validator | None, max_attempts: int, out: queue.SimpleQueue,
        state: _RunState,
    ) -> None:
        from openai import AsyncOpenAI

        state.loop, state.task = asyncio.get_running_loop(), asyncio.current_task()
        if state.stopped.is_set():
            return
        limits = (
            TokenBucket(self.cfg.requests_per_minute) if self.cfg.requests_per_minute else None,
            TokenBucket(self.cfg.tokens_per_minute) if self.cfg.tokens_per_minute else None,
        )
        counters = self.counters

        async def worker() -> None:
            for request in requests:  # one shared iterator: each worker takes the next request when free
                result = await self._answer(client, request, validate, max_attempts, limits)
                counters.results += 1
                if result.error is not None:
                    counters.failures += 1
                out.put(result)

        client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.cfg.timeout_s)
        async with client:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(self.cfg.concurrency):
                        group.create_task(worker())
            except BaseExceptionGroup as group_error:
                first = group_error.exceptions[0]
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None

    def _thread_main(self, *args: Any) -> None:
        out: queue.SimpleQueue = args[3]
        try:
            asyncio.run(self._main(*args))
        except BaseException as e:  # handed to the consumer, which raises it
            out.put(e)
        finally:
            out.put(_DONE)

    def run(
        self,
        requests: Iterable[Request],
        *,
        validate: Validator | None = None,
        max_attempts: int = 1,
        description: str = "generate",
    ) -> Iterator[Result]:
        total = len(requests) if hasattr(requests, "__len__") else None  # type: ignore[arg-type]
        out: queue.SimpleQueue = queue.SimpleQueue()
        state = _RunState()
        thread = threading.Thread(
            target=self._thread_main, args=(iter(requests), validate, max_attempts, out, state), daemon=True,
            name=f"mga-teacher-{self.stage}",
        )
        started = time.perf_counter()
        thread.start()
        try:
            with progress_task(description, total) as advance:
                while (item := out.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        if isinstance(item, asyncio.CancelledError):
                            break
                        raise item
                    advance()
                    yield item
        finally:
            state.stopped.set()
            if state.loop is not None and state.task is not None and thread.is_alive():
                try:
                    state.loop.call_soon_threadsafe(state.task.cancel)
                except RuntimeError:  # the loop already closed
                    pass
            thread.join()
            self.counters.wall_s += time.perf_counter() - started


def make_generator(
    cfg: TeacherConfig,
    *,
    cache_path: Path | None = None,
    accounting: Accounting | None = None,
    stage: str = "label",
) -> Generator:
    """The teacher for `cfg.backend`: an OpenAI-compatible endpoint, or a local checkpoint."""
    if cfg.backend == "openai":
        cache = RequestCache(cache_path) if cache_path is not None else None
        return OpenAIGenerator(cfg, cache=cache, accounting=accounting, stage=stage)
    from mga.distill.generate.local import LocalGenerator

    return LocalGenerator(cfg.model, batch_size=cfg.batch_size, backend=cfg.backend)
