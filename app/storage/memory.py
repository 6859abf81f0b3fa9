"""Threads kept in process memory: the store when Redis is not configured, and its stand-in
while Redis is down.

It honours the same TTL and turn limit as Redis, and holds at most ``max_threads`` threads, so a
long outage or a flood of new conversations cannot grow the process without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .turns import Turn

DEFAULT_MAX_THREADS = 10_000


@dataclass
class _Thread:
    turns: list[Turn]
    expires_at: float


class MemoryThreads:
    """Bounded, expiring threads keyed by continuation id.

    Entries are kept in write order. Every write refreshes the TTL, and the TTL is the same for
    every thread, so write order is also expiry order: expired threads, and past the cap the
    least recently written ones, are always at the front and are evicted from there.
    """

    def __init__(self, ttl_secs: float, max_turns: int,
                 max_threads: int = DEFAULT_MAX_THREADS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_secs <= 0 or max_turns < 1 or max_threads < 1:
            raise ValueError("ttl_secs, max_turns and max_threads must be positive")
        self.ttl_secs = ttl_secs
        self.max_turns = max_turns
        self.max_threads = max_threads
        self._clock = clock
        self._threads: OrderedDict[str, _Thread] = OrderedDict()

    def __len__(self) -> int:
        self._evict()
        return len(self._threads)

    def load(self, continuation_id: str) -> list[Turn] | None:
        """The thread's turns, oldest first, or None when missing or expired."""
        thread = self._live(continuation_id)
        return list(thread.turns) if thread else None

    def append(self, continuation_id: str, turns: Sequence[Turn]) -> list[Turn]:
        """Append, keep the newest ``max_turns`` turns, refresh the TTL; return the thread."""
        thread = self._threads.pop(continuation_id, None)
        if thread is not None and thread.expires_at <= self._clock():
            thread = None
        kept = ((thread.turns if thread else []) + list(turns))[-self.max_turns:]
        self._threads[continuation_id] = _Thread(kept, self._clock() + self.ttl_secs)
        self._evict()
        return list(kept)

    def remaining_ttl(self, continuation_id: str) -> float | None:
        """Seconds the thread has left, or None when missing or expired."""
        thread = self._live(continuation_id)
        return thread.expires_at - self._clock() if thread else None

    def clear(self) -> None:
        self._threads.clear()

    def _live(self, continuation_id: str) -> _Thread | None:
        thread = self._threads.get(continuation_id)
        if thread is not None and thread.expires_at <= self._clock():
            del self._threads[continuation_id]
            return None
        return thread

    def _evict(self) -> None:
        now = self._clock()
        while self._threads:
            oldest = next(iter(self._threads.values()))
            if oldest.expires_at > now and len(self._threads) <= self.max_threads:
                return
            self._threads.popitem(last=False)
