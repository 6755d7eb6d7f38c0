"""Several OpenAI-compatible servers behind one teacher: least-outstanding-requests balancing with ejection.

Each endpoint has its own `AsyncOpenAI` client (its own connection pool) and takes at most `concurrency`
requests at a time. A request goes to the live endpoint with the fewest requests in flight. A connect failure
(refused, reset, dropped: not a timeout, which a busy server also gives) sends the request on to another live
endpoint at once; after `eject_after` connect failures in a row an endpoint is out of the pool for
`cooldown_s`, then gets requests again (one more failure puts it straight back out). With one endpoint
nothing is ejected: the teacher's own retries and backoff apply, as before. Counts per endpoint go to
`stats` (the run's `Accounting.endpoints`).

Structured output `auto` (`mga.distill.generate.structured`): a request whose `response_format` is optional
goes to an endpoint with it until that endpoint refuses it once; the request is then sent again at once
without it, and so is every later one to that endpoint (`no_format`: the endpoints that refused, kept by the
generator for the whole run, said once in the log).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.secrets import redact
from mga.distill.generate import structured

ENDPOINT_COUNTS = ("requests", "ok", "connect_errors", "errors", "ejections", "prompt_tokens", "completion_tokens")


class Endpoint:
    __slots__ = ("url", "name", "client", "outstanding", "fails_in_row", "out_until", "counts")

    def __init__(self, url: str | None, name: str, client: Any, counts: dict[str, int]):
        self.url, self.name, self.client, self.counts = url, name, client, counts
        self.outstanding = 0
        self.fails_in_row = 0
        self.out_until = 0.0


class EndpointPool:
    """`await pool.create(**chat_kwargs)`: one chat completion from the best endpoint; see the module docstring."""

    def __init__(
        self,
        urls: list[str | None],
        *,
        names: list[str],
        api_key: str,
        concurrency: int,
        timeout: Any,
        eject_after: int = 3,
        cooldown_s: float = 30.0,
        stats: dict[str, dict[str, int]] | None = None,
        no_format: set[str] | None = None,
    ):
        from openai import AsyncOpenAI

        stats = stats if stats is not None else {}
        self.endpoints = [
            Endpoint(url, name, AsyncOpenAI(api_key=api_key, base_url=url, max_retries=0, timeout=timeout),
                     stats.setdefault(name, dict.fromkeys(ENDPOINT_COUNTS, 0)))
            for url, name in zip(urls, names, strict=True)
        ]
        self.concurrency = concurrency
        self.eject_after = eject_after if len(self.endpoints) > 1 else 0
        self.cooldown_s = cooldown_s
        self.no_format = no_format if no_format is not None else set()
        self._waiters: list[asyncio.Future] = []

    @property
    def capacity(self) -> int:
        """Requests the pool can have in flight when every endpoint is live."""
        return self.concurrency * len(self.endpoints)

    async def __aenter__(self) -> EndpointPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for endpoint in self.endpoints:
            await endpoint.client.close()

    # ---- choosing an endpoint ------------------------------------------------------------------------------

    def _pick(self, exclude: list[Endpoint], now: float) -> Endpoint | None:
        best = None
        for endpoint in self.endpoints:
            if endpoint.outstanding >= self.concurrency or endpoint.out_until > now or endpoint in exclude:
                continue
            if best is None or endpoint.outstanding < best.outstanding:
                best = endpoint
        return best

    def _alternative(self, exclude: list[Endpoint]) -> bool:
        """Is there a live endpoint not yet tried for this request?"""
        now = time.monotonic()
        return any(e.out_until <= now and e not in exclude for e in self.endpoints)

    async def _acquire(self, exclude: list[Endpoint]) -> Endpoint:
        while True:
            now = time.monotonic()
            endpoint = self._pick(exclude, now)
            if endpoint is not None:
                endpoint.outstanding += 1
                return endpoint
            back = [e.out_until - now for e in self.endpoints if e.out_until > now and e not in exclude]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, min(back) if back else None)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _release(self, endpoint: Endpoint) -> None:
        endpoint.outstanding -= 1
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    def _connect_failed(self, endpoint: Endpoint) -> None:
        endpoint.counts["connect_errors"] += 1
        endpoint.fails_in_row += 1
        if self.eject_after and endpoint.fails_in_row >= self.eject_after and endpoint.out_until <= time.monotonic():
            endpoint.out_until = time.monotonic() + self.cooldown_s
            endpoint.counts["ejections"] += 1

    # ---- one request ---------------------------------------------------------------------------------------

    async def create(self, *, optional_format: bool = False, **kwargs: Any) -> Any:
        """The chat completion; a connect failure moves on to the next live endpoint, and is raised only
        when none is left to try (then the caller's retry and backoff apply). `optional_format`: the
        `response_format` may be dropped where the endpoint refuses it (structured output `auto`)."""
        import openai

        tried: list[Endpoint] = []
        while True:
            endpoint = await self._acquire(tried)
            endpoint.counts["requests"] += 1
            sent = kwargs
            if optional_format and endpoint.name in self.no_format:
                sent = {k: v for k, v in kwargs.items() if k != "response_format"}
            try:
                response = await endpoint.client.chat.completions.create(**sent)
            except openai.APITimeoutError:
                endpoint.counts["errors"] += 1
                raise
            except openai.APIConnectionError:
                self._connect_failed(endpoint)
                tried.append(endpoint)
                if not self._alternative(tried):
                    raise
                continue
            except openai.APIStatusError as e:
                endpoint.fails_in_row = 0  # it answered: reachable
                endpoint.counts["errors"] += 1
                if "response_format" in sent and optional_format and structured.refused(e.status_code, str(e)):
                    self._drop_format(endpoint, e)
                    continue
                raise
            except BaseException:
                endpoint.counts["errors"] += 1
                raise
            finally:
                self._release(endpoint)
            endpoint.fails_in_row = 0
            counts = endpoint.counts
            counts["ok"] += 1
            usage = getattr(response, "usage", None)
            if usage is not None:
                counts["prompt_tokens"] += getattr(usage, "prompt_tokens", 0) or 0
                counts["completion_tokens"] += getattr(usage, "completion_tokens", 0) or 0
            return response

    def _drop_format(self, endpoint: Endpoint, error: Exception) -> None:
        if endpoint.name not in self.no_format:
            self.no_format.add(endpoint.name)
            reason = redact(str(error), endpoint.client.api_key)[:200]
            console.print(f"warning: {endpoint.name} refused structured output ({reason}); "
                          "structured_output auto goes on without it at this endpoint for the rest of the run",
                          markup=False, soft_wrap=True)


def pool_for(generator: Any) -> EndpointPool:
    """The pool of an `OpenAIGenerator`: its endpoints, key, concurrency, timeouts and ejection settings."""
    from mga.distill.generate import endpoint

    cfg, urls = generator.cfg, generator.base_urls
    return EndpointPool(
        urls, names=[endpoint.display_url(u) for u in urls], api_key=generator._api_key,
        concurrency=cfg.concurrency, timeout=endpoint.client_timeout(cfg), eject_after=cfg.eject_after,
        cooldown_s=cfg.eject_cooldown_s, stats=generator.accounting.endpoints if len(urls) > 1 else None,
        no_format=generator.no_format,
    )
