"""Requests-per-minute and tokens-per-minute limits for the teacher client (asyncio token buckets)."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Allows `per_minute` units a minute on average, with bursts of up to a tenth of that.

    `acquire(n)` waits until `n` units are available; `charge(n)` books units known only afterwards (the
    completion tokens of an answer) by letting the level go negative, which slows the next callers.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 10.0)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        need = min(amount, self.capacity)  # a request larger than a burst waits for a full bucket, then goes
        async with self._lock:  # first come, first served
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def charge(self, amount: float) -> None:
        self._refill()
        self.level -= amount
