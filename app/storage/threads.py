"""The conversation-thread store the chat tool uses: Redis when configured, memory otherwise.

When Redis fails at run time the store keeps serving from memory instead of failing the chat,
reports itself degraded, and probes Redis every ``redis_retry_secs``. When Redis answers, the
threads written during the outage are copied back and the store returns to Redis. The warning
is logged in the context of the call that met the outage; the probe runs in a context of its own
(no trace), so its log lines and spans are not tied to that call.

A thread that lives only in Redis cannot be read while Redis is down: ``load`` honestly returns
None for it (the chat tool answers CONTINUATION_NOT_FOUND). Memory is not a mirror of Redis, so
an outage never serves a stale copy and never doubles the memory a thread costs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Any, Literal

from redis.asyncio import Redis

from app.config import Settings
from otel import names
from otel.instruments import Instruments

from .fallback import Outage
from .memory import MemoryThreads
from .redis_store import REDIS_FAILURES, RedisThreads
from .turns import Turn

log = logging.getLogger(__name__)

Backend = Literal["redis", "memory"]


class ThreadStore:
    """Threads keyed by continuation id, with TTL, a turn limit and fallback to memory."""

    def __init__(self, memory: MemoryThreads, redis: RedisThreads | None,
                 retry_secs: float) -> None:
        self._memory = memory
        self._redis = redis
        self._retry_secs = retry_secs
        self._outage: Outage | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def configured(self) -> Backend:
        return "redis" if self._redis is not None else "memory"

    @property
    def fallback_active(self) -> bool:
        return self._outage is not None

    async def start(self) -> None:
        """Check Redis once, so a daemon started during an outage serves from memory at once."""
        if self._redis is not None:
            try:
                await self._redis.ping()
            except REDIS_FAILURES as exc:
                self._fall_back(exc)

    async def aclose(self) -> None:
        """Stop probing; the shared Redis client is closed by its owner, the daemon."""
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None

    async def load(self, continuation_id: str) -> list[Turn] | None:
        """The thread's turns, oldest first, or None when it does not exist or has expired."""
        if self._redis is not None and self._outage is None:
            try:
                return await self._redis.load(continuation_id)
            except REDIS_FAILURES as exc:
                self._fall_back(exc)
        return self._memory.load(continuation_id)

    async def append(self, continuation_id: str, turns: Sequence[Turn]) -> list[Turn]:
        """Append turns (creating the thread), keep the newest ones, refresh the TTL.

        Returns the stored thread, oldest first.
        """
        if not turns:
            raise ValueError("append needs at least one turn")
        if self._redis is not None and self._outage is None:
            try:
                return await self._redis.append(continuation_id, turns)
            except REDIS_FAILURES as exc:
                self._fall_back(exc)
        stored = self._memory.append(continuation_id, turns)
        if self._outage is not None:
            self._outage.changed(continuation_id)
        return stored

    async def health(self) -> dict[str, Any]:
        """The storage component of the health report; PINGs Redis when it is in use."""
        if self._redis is not None and self._outage is None and not self._closed:
            try:
                await self._redis.ping()
            except REDIS_FAILURES as exc:
                self._fall_back(exc)
        outage = self._outage
        if self._closed:
            status = "unhealthy"
        else:
            status = "degraded" if outage is not None else "healthy"
        return {
            "status": status,
            "backend": "memory" if outage is not None else self.configured,
            "configured": self.configured,
            "fallback_active": outage is not None,
            "last_error": outage.last_error if outage is not None else None,
            "pending_resync": outage.pending if outage is not None else 0,
        }

    def _fall_back(self, exc: BaseException) -> None:
        assert self._redis is not None
        error = self._redis.describe(exc)
        if self._outage is not None:
            self._outage.last_error = error
            return
        self._outage = Outage(error)
        log.warning("Redis unavailable (%s); serving conversation threads from memory and "
                    "retrying every %ss", error, self._retry_secs)
        if not self._closed:
            # Detached from the caller's context: the probe outlives the request that met the
            # outage, so its logs and Redis spans must not carry (or join) that request's trace.
            self._probe = asyncio.create_task(self._recover(), name="thread-store-redis-probe",
                                              context=contextvars.Context())

    async def _recover(self) -> None:
        """PING Redis every ``retry_secs``; once it answers, write memory back and switch."""
        assert self._redis is not None
        while (outage := self._outage) is not None:
            await asyncio.sleep(self._retry_secs)
            try:
                await self._redis.ping()
                copied = await outage.write_back(self._memory, self._redis)
            except REDIS_FAILURES as exc:
                outage.last_error = self._redis.describe(exc)
                continue
            # No await since write_back found nothing pending: no memory write can slip between.
            self._memory.clear()
            self._outage = None
            log.info("Redis answers again; copied %d thread(s) written during the outage back "
                     "and serving conversation threads from Redis", copied)
        self._probe = None


def create_thread_store(settings: Settings, instruments: Instruments,
                        redis: Redis | None = None) -> ThreadStore:
    """Threads in ``redis`` (the process's shared client, from ``REDIS_URL``) or, without one, in
    memory; registers the fallback gauge."""
    memory = MemoryThreads(settings.conversation_ttl_secs, settings.max_conversation_turns)
    threads = None
    if redis is not None:
        threads = RedisThreads(redis, settings.conversation_ttl_secs,
                               settings.max_conversation_turns, instruments.db_duration)
    store = ThreadStore(memory, threads, settings.redis_retry_secs)
    attributes: dict[str, str] = {names.EXAI_STORAGE_BACKEND: store.configured}
    instruments.observe_gauge(names.EXAI_STORAGE_FALLBACK_ACTIVE,
                              lambda: [(float(store.fallback_active), attributes)])
    return store
