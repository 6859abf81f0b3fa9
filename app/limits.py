"""Concurrency slots with a bounded wait, and a per-session token bucket.

Slots are only ever released by the holder that acquired them (``async with``); nothing
"recovers" capacity behind a caller's back, so capacity cannot inflate. (The provider slots
shared across daemons, ``app.shared_limits``, also free a dead daemon's slots when its leases
expire: a process that is gone cannot release them.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from .errors import ExaiError


class CapacityExceeded(ExaiError):
    """No slot became free within the bounded wait."""

    def __init__(self, scope: str, retry_after: float) -> None:
        super().__init__(f"{scope} concurrency limit reached")
        self.scope = scope
        self.retry_after = retry_after


class Slots:
    """A named concurrency limit; ``hold`` waits at most ``wait_secs`` for a slot."""

    def __init__(self, scope: str, limit: int, wait_secs: float) -> None:
        self.scope = scope
        self.limit = limit
        self._wait_secs = wait_secs
        self._semaphore = asyncio.Semaphore(limit)
        self._held = 0

    @property
    def in_use(self) -> int:
        return self._held

    def hold(self) -> AbstractAsyncContextManager[None]:
        return self.hold_until(self.deadline())

    def deadline(self) -> float:
        """When a wait for a slot that starts now gives up (event loop time)."""
        return asyncio.get_running_loop().time() + self._wait_secs

    def exceeded(self) -> CapacityExceeded:
        """What a caller that waited in vain is told."""
        return CapacityExceeded(self.scope, retry_after=max(1.0, self._wait_secs))

    @asynccontextmanager
    async def hold_until(self, deadline: float) -> AsyncIterator[None]:
        """Hold a local slot, waiting for one until ``deadline`` (event loop time).

        A free slot is taken at once, without arming a timer: that is every call below the
        limit, three slots per chat call."""
        if self._semaphore.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise self.exceeded() from None
        else:
            await self._semaphore.acquire()  # returns at once: no suspension, no wait to bound
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self._semaphore.release()


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` says how long to wait when empty."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def take(self) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate if self.rate > 0 else float("inf")
