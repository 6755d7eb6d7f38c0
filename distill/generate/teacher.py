"""The teacher: any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, llama.cpp) as a `Generator`.

Requests run on an asyncio loop in a background thread over the official `AsyncOpenAI` client (its own
retries off): a fixed pool of `concurrency` workers, a per-request timeout with a short connect timeout,
retries per `mga.distill.generate.retry`, optional requests/tokens-per-minute budgets, and a cache that makes
reruns free. `run()` is a plain iterator yielding results as they finish. Before the first request a
preflight (`mga.distill.generate.endpoint`) checks the URL, the key and the model in seconds; a run in which
every request failed ends with one `MgaError` line. Every request is recorded as sent before it leaves, and
its cost with its answer (`mga.distill.generate.accounting`). The API key never leaves the client: errors are
scrubbed of it and the cache does not store it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.config import TeacherConfig
from mga.distill.core.console import progress_task
from mga.distill.core.errors import DiskFull
from mga.distill.core.tokens import estimate_message_tokens
from mga.distill.generate import endpoint, structured
from mga.distill.generate.accounting import Accounting, in_flight
from mga.distill.generate.batch import batch_mode
from mga.distill.generate.budget import Budget, within_budget
from mga.distill.generate.cache import RequestCache, request_key
from mga.distill.generate.commits import GroupCommit
from mga.distill.generate.endpoint import TeacherUnavailable
from mga.distill.generate.pool import pool_for
from mga.distill.generate.protocol import Completion, Generator, Request, Result, Validator
from mga.distill.generate.ratelimit import TokenBucket
from mga.distill.generate.reask import Asking
from mga.distill.generate.retry import GAVE_UP, Failure, backoff, classify

_DONE = object()


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
        preflight: bool = True,
        spent_before: float = 0.0,
    ):
        self.cfg = cfg
        self.model_name = self.model_id = cfg.model
        self.cache = cache
        self.accounting = accounting if accounting is not None else Accounting.for_teacher(cfg)
        self.stage = stage
        self.account = self.accounting.for_stage(stage, cache)
        self.counters = self.account.counters
        self._commits = GroupCommit(self.account)  # the account's writes, one transaction per loop turn
        self.base_urls = endpoint.base_urls_of(cfg)  # one, or a pool (mga.distill.generate.pool)
        self.base_url, self.url = self.base_urls[0], ", ".join(endpoint.display_url(u) for u in self.base_urls)
        self.endpoint_id = endpoint.cache_scope(cfg)
        self._api_key = endpoint.api_key_of(cfg, self.base_url)
        self._preflight = preflight
        self._any_success = self._any_cached = False
        self.budget = Budget.for_teacher(cfg, self.accounting, spent_before)  # None without teacher.max_budget_usd
        self._early_failures = 0
        self._last_reason: str | None = None
        self.no_format: set[str] = set()  # endpoints that refused structured output `auto` (pool.py)

    def _kwargs(self, request: Request) -> dict[str, Any]:
        """The chat call's arguments. `repetition_penalty` is no OpenAI parameter: it goes in `extra_body`,
        only when set, under vLLM/SGLang's name and llama.cpp's (`repeat_penalty`); servers ignore the other."""
        p = request.params
        kwargs: dict[str, Any] = {"model": self.model_name, "messages": request.messages,
                                  "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
        if p.seed is not None:
            kwargs["seed"] = p.seed
        if request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 5
        if (response_format := structured.openai_response_format(request)) is not None:
            kwargs["response_format"] = response_format
        if p.repetition_penalty != 1.0:
            kwargs["extra_body"] = {"repetition_penalty": p.repetition_penalty, "repeat_penalty": p.repetition_penalty}
        return kwargs

    def _final_failure(self, reason: str, *, unreachable: bool) -> None:
        """Fail the whole run when requests keep failing before any has succeeded (cached answers count as
        successes for refused requests, not for an unreachable endpoint)."""
        self._last_reason = reason
        if self._any_success or (self._any_cached and not unreachable):
            return
        self._early_failures += 1
        if unreachable or self._early_failures >= self.cfg.fail_fast_after:
            what = "cannot reach the teacher" if unreachable else f"the first {self._early_failures} requests failed"
            raise TeacherUnavailable(f"{what} at {self.url} (model '{self.model_name}'): {reason}")

    # ---- one request ---------------------------------------------------------------------------------------

    async def _call(self, client: Any, request: Request, key: str | None, limits: tuple) -> tuple[Completion | None, str | None]:
        """One answer from the endpoint, with retries on transient errors: (completion, None) or (None, why).
        A paid answer is cached under `key` together with its cost."""
        import openai

        rpm, tpm = limits
        kwargs, sent = self._kwargs(request), in_flight(request)
        optional_format = structured.wanted(request) == "auto"
        settled = {name: -value for name, value in sent.items()}  # with the answer or failure, in its transaction
        failure = Failure("no attempt made")
        for attempt in range(1, self.cfg.max_attempts + 1):
            if rpm is not None:
                await rpm.acquire(1)
            if tpm is not None:
                await tpm.acquire(estimate_message_tokens(request.messages))
            try:
                response = await within_budget(self.budget, request,
                                               lambda: self._commits.sending(
                                                   sent, lambda: client.create(optional_format=optional_format, **kwargs)))
            except openai.OpenAIError as e:
                failure = classify(e, self.cfg.timeout_s, self._api_key)
                if structured.wanted(request) in ("json_schema", "json_object") and structured.refused(
                        failure.status, failure.reason):  # asking again cannot help, even after a 500
                    failure.reason += "; structured_output auto sends the schema only where the endpoint takes it"
                    failure.final = True
            else:
                completion = self._completion(response, request)
                if completion is not None:
                    self._any_success = True
                    await self._commits.answered(key, completion, self.model_name, requests=1, **completion.tokens,
                                                 **settled)
                    if tpm is not None:
                        tpm.charge(completion.completion_tokens)
                    return completion, None
                failure = Failure("the answer had no choices")
            again = not failure.final and attempt < self.cfg.max_attempts
            await self._commits.count(requests=1, retries=int(again), **settled)
            if failure.status is not None:
                self._refused(failure)
            if failure.final:
                self._final_failure(failure.reason, unreachable=False)
                return None, f"the teacher refused the request ({failure.reason})"
            if again:
                await asyncio.sleep(backoff(attempt, self.cfg.backoff_base_s, self.cfg.backoff_max_s, failure.delay))
        self._final_failure(failure.reason, unreachable=failure.unreachable)
        return None, f"{GAVE_UP} {self.cfg.max_attempts} attempts: {failure.reason}"

    def _refused(self, failure: Failure) -> None:
        """A wrong key or an unknown model ends the run: one line instead of one failure per row."""
        if failure.status in (401, 403):
            raise TeacherUnavailable(f"the teacher at {self.url} refused the API key ({failure.status}); check "
                                     f"${self.cfg.api_key_env} or teacher.api_key")
        if failure.status == 404:
            raise TeacherUnavailable(f"the teacher at {self.url} has no model '{self.model_name}' or no chat "
                                     f"endpoint ({failure.reason})")

    def _completion(self, response: Any, request: Request) -> Completion | None:
        if not getattr(response, "choices", None):
            return None
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        logprobs = None
        if request.logprobs and choice.logprobs is not None and choice.logprobs.content:
            logprobs = [entry.model_dump() for entry in choice.logprobs.content]
        return Completion(text=(choice.message.content if choice.message else None) or "",
                          finish_reason=choice.finish_reason, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0, logprobs=logprobs)

    async def _answer(
        self, client: Any, request: Request, validate: Validator | None, max_attempts: int, limits: tuple
    ) -> Result:
        """A validated answer (`mga.distill.generate.reask`): each re-ask is a new request (a new cache key)."""
        asking = Asking(request, validate, max_attempts)
        while True:
            key = None if self.cache is None else request_key(self.model_name, request, asking.attempt,
                                                              self.endpoint_id)
            completion = self.cache.get(key) if key is not None else None
            if completion is not None:
                await self._commits.count(cache_hits=1)
                self._any_cached = True
            else:
                completion, error = await self._call(client, request, key, limits)
                if completion is None:
                    return asking.failed(error or "no answer")
            result = asking.take(completion)
            if asking.last_rejected and not completion.cached:
                await self._commits.count(invalid=1)
            if result is not None:
                return result

    # ---- the loop ------------------------------------------------------------------------------------------

    async def _main(self, requests: Iterator[Request], validate: Validator | None, max_attempts: int,
                    out: queue.SimpleQueue, state: _RunState) -> None:
        state.loop, state.task = asyncio.get_running_loop(), asyncio.current_task()
        if state.stopped.is_set():
            return
        limits = (
            TokenBucket(self.cfg.requests_per_minute) if self.cfg.requests_per_minute else None,
            TokenBucket(self.cfg.tokens_per_minute) if self.cfg.tokens_per_minute else None,
        )

        async def worker() -> None:
            for request in requests:  # one shared iterator: each worker takes the next request when free
                result = await self._answer(client, request, validate, max_attempts, limits)
                await self._commits.count(results=1, failures=int(result.error is not None))
                out.put(result)

        client = pool_for(self)
        async with client:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(client.capacity):
                        group.create_task(worker())
            except BaseExceptionGroup as group_error:
                first = group_error.exceptions[0]
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None
            finally:
                self._commits.close()  # what cancelled workers had paid for

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
        if total == 0:
            return
        if self._preflight:
            endpoint.preflight_all(self.cfg, self.base_urls, self._api_key)
            self._preflight = False
        out: queue.SimpleQueue = queue.SimpleQueue()
        state = _RunState()
        thread = threading.Thread(
            target=self._thread_main, args=(iter(requests), validate, max_attempts, out, state), daemon=True,
            name=f"mga-teacher-{self.stage}",
        )
        started = time.perf_counter()
        ok = failed = 0
        thread.start()
        finished = False
        try:
            with progress_task(description, total) as advance:
                while (item := out.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        if isinstance(item, asyncio.CancelledError):
                            break
                        raise item
                    ok, failed = ok + item.ok, failed + (not item.ok)
                    advance(failed=not item.ok)
                    yield item
            if failed and not ok and item is _DONE and not (self._any_success or self._any_cached):
                raise TeacherUnavailable(f"every one of the {failed} requests to the teacher at {self.url} failed "
                                         f"(model '{self.model_name}'): {self._last_reason}")
            finished = True
        finally:
            state.stopped.set()
            if state.loop is not None and state.task is not None and thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    state.loop.call_soon_threadsafe(state.task.cancel)
            thread.join()
            # closed by an error elsewhere (a full disk, say): that error is the one to report, not a second
            # failure to write the run's wall time on the same disk from a generator's finalizer
            with contextlib.suppress(OSError, DiskFull) if not finished else contextlib.nullcontext():
                self.account.count(wall_s=time.perf_counter() - started)


def make_generator(
    cfg: TeacherConfig, *, cache_path: Path | None = None, accounting: Accounting | None = None, stage: str = "label",
    spent_before: float = 0.0,
) -> Generator:
    """The teacher for `cfg.backend`: an endpoint (online or Batch API; budget: `spent_before`) or a checkpoint."""
    if cfg.backend == "openai":
        cache = RequestCache(cache_path) if cache_path is not None else None
        online = OpenAIGenerator(cfg, cache=cache, accounting=accounting, stage=stage, spent_before=spent_before)
        return batch_mode(online, cache_path) if cfg.mode == "batch" else online
    from mga.distill.generate.local import LocalGenerator

    return LocalGenerator(cfg.model, batch_size=cfg.batch_size, backend=cfg.backend, threads=cfg.threads)
