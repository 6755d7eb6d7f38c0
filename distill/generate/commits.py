"""Group commit of a generator's accounting events: one transaction per turn of the event loop.

Every answer is committed to the cache with its cost before its worker takes the next request, so a kill
loses at most the requests in flight. One transaction per answer made the commit about a third of the client's
CPU beyond a bare `AsyncOpenAI` loop (bench/label_throughput.py). Here the events that arrive in the same turn
of the loop (a busy client reads several answers per turn) go into one transaction at the end of the turn,
and each caller resumes only after that commit: the same guarantee, a fraction of the commits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mga.distill.generate.accounting import StageAccount

Event = tuple[str | None, Any, str, dict[str, Any]]  # (key, completion or None, model, counts)


class GroupCommit:
    """`await answered(...)` / `await count(...)`: the StageAccount calls, counted at once and written to disk
    together per loop turn."""

    def __init__(self, account: StageAccount):
        self.account = account
        self._events: list[Event] = []
        self._waiters: list[asyncio.Future] = []
        self._unheard: BaseException | None = None  # a failed commit whose callers were all cancelled

    async def answered(self, key: str | None, completion: Any, model: str, **counts: Any) -> None:
        await self._add((key, completion, model, counts))

    async def count(self, **counts: Any) -> None:
        await self._add((None, None, "", counts))

    async def sending(self, sent: dict[str, Any], call: Any) -> Any:
        """`await call()` once `sent` (the request in flight) is on disk: a crash then leaves it counted."""
        await self.count(**sent)
        return await call()

    async def _add(self, event: Event) -> None:
        self.account.counters.add(event[3])  # at once: the budget of the next request sees this cost
        if not self.account.on_disk(event[0], event[1]):
            return
        loop = asyncio.get_running_loop()
        if not self._events:
            loop.call_soon(self.flush)
        self._events.append(event)
        waiter = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def close(self) -> None:
        """Commit what is left when the loop ends (cancelled callers' paid answers), and raise a failed commit
        that no caller was left to hear of."""
        self.flush()
        unheard, self._unheard = self._unheard, None
        if unheard is not None:
            raise unheard

    def flush(self) -> None:
        """Commit the events gathered so far."""
        events, waiters, self._events, self._waiters = self._events, self._waiters, [], []
        if not events:
            return
        try:
            self.account.persist(events)
        except BaseException as e:
            pending = [waiter for waiter in waiters if not waiter.done()]
            if not pending:
                self._unheard = self._unheard or e
            for waiter in pending:
                waiter.set_exception(e)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
