"""Provider concurrency limits shared by every daemon on one Redis (EXAI_SHARED_PROVIDER_LIMITS).

A provider's slots (``EXAI_KIMI_MAX_INFLIGHT``, ``EXAI_GLM_MAX_INFLIGHT``) protect one provider
key, and every daemon on the same key counts against it; per process, N daemons would allow N
times the limit. With the setting on, each provider's limit is a distributed semaphore in Redis:
a sorted set per provider, ``exai:limits:provider:<key>``, whose members are the calls holding a
slot, scored by when their lease expires (Redis' clock, so daemons need not agree on the time).
One Lua script drops expired leases and takes a slot when fewer than the limit are held, in one
step. A call renews its lease every third of ``LEASE_SECS`` while it runs and removes it when it
ends; a daemon killed while holding a slot leaves a lease that expires within ``LEASE_SECS``, so
nothing leaks. The set itself expires ``LEASE_SECS`` after the last acquire or renewal.

A call first takes the daemon's own slot (the per-process ``Slots`` of the same limit), then a
shared one, both within ``EXAI_SLOT_WAIT_SECS``; past it, ``CapacityExceeded`` as before. The
local slot bounds the process however Redis behaves. When Redis fails or does not answer within
``REDIS_TIMEOUT_SECS``, the call goes on under the local slot alone (never failing because of
Redis): one warning in the log, an ``exai.provider_limit.fallback`` event on the call's span, and
``exai.provider_limit.mode=local`` on it and on every call admitted while Redis is away. For
``EXAI_REDIS_RETRY_SECS`` after a failure calls do not ask Redis; the first call after that does,
and once Redis answers the shared limit applies again (logged once). Calls that held a shared
slot when Redis went away, or a local one when it came back, finish where they started, so
around an outage the fleet may briefly run more than the limit, never a process more than its own.

Every daemon sharing a provider key should set the same limit: each compares the holders it
finds with its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry import trace
from redis.asyncio import Redis

from otel import names

from .limits import Slots
from .storage.redis_client import redis_password
from .storage.redis_store import REDIS_FAILURES, describe_error

log = logging.getLogger(__name__)

KEY_PREFIX = "exai:limits:provider:"
# A holder that stops renewing (its daemon died) frees its slot at most this long after.
LEASE_SECS = 15.0
# Each limiter command's bound; slower counts as Redis being away (the client's own is 1 s).
REDIS_TIMEOUT_SECS = 0.5
# Between two tries for a slot while the limit is full: growing from the first to the last.
POLL_FIRST_SECS = 0.02
POLL_MAX_SECS = 0.25

# Who holds a slot, for a person reading the set (ZRANGE ... WITHSCORES): host, process, call.
HOLDER_PREFIX = f"{socket.gethostname()}:{os.getpid()}:"

SHARED = "shared"
LOCAL = "local"

# KEYS[1] the holders; ARGV: limit, lease (ms), holder. 1 when the slot is taken, else 0. Bounded:
# the set holds at most the largest limit any daemon uses, plus leases that have expired.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1] the holders; ARGV: lease (ms), holder. 1 when the lease was live and is extended, else 0.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not expires or tonumber(expires) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class SharedLimits:
    """The process's view of the shared limits on one Redis: its scripts and whether Redis is
    away (one outage for every provider, so it is logged once)."""

    def __init__(self, redis: Redis, retry_secs: float, lease_secs: float = LEASE_SECS,
                 timeout_secs: float = REDIS_TIMEOUT_SECS) -> None:
        self._redis = redis
        self._retry_secs = retry_secs
        self.lease_secs = lease_secs
        self._lease_ms = max(1, int(lease_secs * 1000))
        self._timeout_secs = timeout_secs
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._away_until: float | None = None  # event loop time of the next try, during an outage

    @property
    def fallback_active(self) -> bool:
        return self._away_until is not None

    def slots(self, scope: str, name: str, limit: int, wait_secs: float) -> SharedSlots:
        """A provider's slots: ``limit`` across the fleet, held under ``KEY_PREFIX + name``."""
        return SharedSlots(self, scope, f"{KEY_PREFIX}{name}", limit, wait_secs)

    def usable(self) -> bool:
        """Whether to ask Redis: always, except for ``retry_secs`` after it failed."""
        return self._away_until is None or asyncio.get_running_loop().time() >= self._away_until

    async def try_acquire(self, key: str, limit: int, holder: str) -> bool | None:
        """Take a slot: True when taken, False when all are held, None when Redis is away."""
        taken = await self._call(self._acquire(keys=[key], args=[limit, self._lease_ms, holder]))
        return None if taken is None else bool(taken)

    async def renew(self, key: str, holder: str) -> bool | None:
        """Extend a lease: False when it had already expired, None when Redis is away."""
        renewed = await self._call(self._renew(keys=[key], args=[self._lease_ms, holder]))
        return None if renewed is None else bool(renewed)

    async def release(self, key: str, holder: str) -> None:
        """Give a slot back; when Redis is away its lease expires instead."""
        await self._call(self._redis.zrem(key, holder))

    async def _call(self, command: Awaitable[Any]) -> Any:
        """Await a Redis command within the bound; None (and the outage noted) when it fails."""
        try:
            async with asyncio.timeout(self._timeout_secs):
                result = await command
        except REDIS_FAILURES as exc:
            self._away(exc)
            return None
        if self._away_until is not None:
            self._away_until = None
            log.info("Redis answers again; provider concurrency limits are shared again")
        return result

    def _away(self, exc: BaseException) -> None:
        first = self._away_until is None
        self._away_until = asyncio.get_running_loop().time() + self._retry_secs
        span = trace.get_current_span()
        error = describe_error(exc, [p] if (p := redis_password(self._redis)) else [])
        span.add_event(names.EXAI_PROVIDER_LIMIT_FALLBACK, {names.ERROR_TYPE: type(exc).__name__})
        if first:
            log.warning("Redis unavailable (%s); provider concurrency limits are per daemon "
                        "until it answers (retried every %ss)", error, self._retry_secs)


class SharedSlots(Slots):
    """A provider's slots counted across every daemon on the Redis of ``limits``.

    ``hold`` is ``Slots.hold``'s contract: wait at most ``wait_secs``, then ``CapacityExceeded``.
    """

    def __init__(self, limits: SharedLimits, scope: str, key: str, limit: int,
                 wait_secs: float) -> None:
        super().__init__(scope, limit, wait_secs)
        self._limits = limits
        self.key = key

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        deadline = self.deadline()
        async with self.hold_until(deadline):
            holder = await self._acquire_shared(deadline)
            _mark(LOCAL if holder is None else SHARED)
            if holder is None:
                yield
                return
            renewal = asyncio.create_task(self._keep(holder), name=f"lease-renewal {self.key}")
            try:
                yield
            finally:
                renewal.cancel()
                await asyncio.gather(renewal, return_exceptions=True)
                await self._limits.release(self.key, holder)

    async def _acquire_shared(self, deadline: float) -> str | None:
        """A shared slot's holder id, or None when Redis is away (the local slot alone)."""
        if not self._limits.usable():
            return None
        holder = f"{HOLDER_PREFIX}{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        pause = POLL_FIRST_SECS
        try:
            while True:
                taken = await self._limits.try_acquire(self.key, self.limit, holder)
                if taken is None:
                    return None
                if taken:
                    return holder
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _mark(SHARED)
                    raise self.exceeded()
                await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.0)))
                pause = min(POLL_MAX_SECS, pause * 2)
        except asyncio.CancelledError:
            # Cancelled while the script ran: the slot may be ours, so give it back at once.
            await self._limits.release(self.key, holder)
            raise

    async def _keep(self, holder: str) -> None:
        """Renew the lease every third of its length while the call runs."""
        while True:
            await asyncio.sleep(self._limits.lease_secs / 3)
            if await self._limits.renew(self.key, holder) is False:
                log.warning("a %s slot's lease expired while its call ran (the daemon was "
                            "stalled or Redis lost it); the call goes on", self.key)
                return


def _mark(mode: str) -> None:
    """Say on the call's span which limit admitted (or refused) it."""
    trace.get_current_span().set_attribute(names.EXAI_PROVIDER_LIMIT_MODE, mode)
