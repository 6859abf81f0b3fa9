"""The durable outbox: chat turns wait here until Supabase has them.

With Redis (``REDIS_URL``) the outbox is three lists, so a daemon restart loses nothing:

- ``exai:supabase:outbox`` -- pending writes; new ones are pushed on the left, the oldest is
  taken from the right;
- ``exai:supabase:outbox:processing`` -- the write being delivered, moved there atomically
  (``LMOVE``) and removed only once Supabase has it; at start, whatever a stopped or crashed
  daemon left there goes back to pending (at-least-once delivery; the idempotent upserts make
  the effect exactly once);
- ``exai:supabase:outbox:dead`` -- writes Supabase refused (poison rows), kept for a person.

Without Redis, or while Redis is failing, writes wait in a bounded in-memory queue: those are
lost if the daemon stops before Supabase takes them, and past the bound the oldest is dropped
(counted and logged). When Redis comes back, in-memory writes move to Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import RedisError

from app.storage.redis_store import describe_error, quiet_pipeline
from app.timestamps import utc_now_iso
from otel.redaction import scrub

log = logging.getLogger("exai.persistence")

DEFAULT_PREFIX = "exai:supabase:outbox"
_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


@dataclass
class OutboxEntry:
    """One chat turn to archive: a conversation upsert and its message upserts."""

    continuation_id: str
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    enqueued_at: float = field(default_factory=time.time)
    version: int = 1
    # W3C trace context of the chat that recorded it, so its delivery links back to that trace.
    trace_context: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | bytes) -> OutboxEntry:
        data = json.loads(raw)
        return cls(continuation_id=data["continuation_id"], conversation=data["conversation"],
                   messages=list(data["messages"]), id=data["id"],
                   enqueued_at=float(data["enqueued_at"]), version=int(data.get("version", 1)),
                   trace_context=dict(data.get("trace_context") or {}))


@dataclass
class Claim:
    """A write taken for delivery; ``ack`` or ``dead_letter`` it when done."""

    entry: OutboxEntry
    source: str  # "redis" | "memory"
    raw: str | bytes | None = None


@dataclass
class OutboxStats:
    depth: int = 0
    oldest_age_s: float = 0.0
    dead_letters: int = 0
    backend: str = "memory"
    redis_ok: bool | None = None
    in_memory: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "oldest_age_s": round(self.oldest_age_s, 3),
                "dead_letters": self.dead_letters, "backend": self.backend,
                "redis_ok": self.redis_ok, "in_memory": self.in_memory}


class Outbox:
    """Pending archive writes, in Redis when there is one, in memory otherwise."""

    def __init__(self, redis: Any = None, *, prefix: str = DEFAULT_PREFIX,
                 memory_limit: int = 10_000, dead_limit: int = 10_000,
                 redis_timeout_secs: float = 2.0,
                 on_drop: Callable[[OutboxEntry], None] | None = None) -> None:
        self.redis = redis
        self.pending_key = prefix
        self.processing_key = f"{prefix}:processing"
        self.dead_key = f"{prefix}:dead"
        self.memory_limit = memory_limit
        self.dead_limit = dead_limit
        self.redis_timeout_secs = redis_timeout_secs
        self._on_drop = on_drop
        self._memory: deque[OutboxEntry] = deque()
        self._memory_dead: deque[dict[str, Any]] = deque(maxlen=dead_limit)
        self.redis_ok: bool | None = None if redis is None else True
        self.last_stats = OutboxStats(backend=self.backend)

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    async def _redis(self, coro: Any) -> Any:
        try:
            result = await asyncio.wait_for(coro, self.redis_timeout_secs)
        except _REDIS_ERRORS as exc:
            # Described, not with exc_info: redis-py quotes a failed pipeline command into its
            # error, and the outbox's commands carry the turns' content.
            if self.redis_ok:
                log.warning("Redis failed under the Supabase outbox (%s); writes wait in memory "
                            "until it is back (they are lost if the daemon stops before then)",
                            describe_error(exc))
            self.redis_ok = False
            raise
        if self.redis_ok is False:
            log.info("Redis is back under the Supabase outbox")
        self.redis_ok = True
        return result

    # --- writing ------------------------------------------------------------------------------

    async def put(self, entry: OutboxEntry) -> str:
        """Store a write; returns where it went (``redis`` or ``memory``). Never raises."""
        if self.redis is not None:
            try:
                await self._redis(self.redis.lpush(self.pending_key, entry.dumps()))
                return "redis"
            except _REDIS_ERRORS:
                pass
        self._put_memory(entry)
        return "memory"

    def _put_memory(self, entry: OutboxEntry) -> None:
        while len(self._memory) >= self.memory_limit:
            dropped = self._memory.popleft()
            log.error("Supabase outbox in memory is full (%d writes): dropped the oldest write "
                      "(conversation %s, %d messages)", self.memory_limit,
                      dropped.continuation_id, len(dropped.messages))
            if self._on_drop:
                self._on_drop(dropped)
        self._memory.append(entry)

    async def spill_memory_to_redis(self) -> int:
        """Move writes that waited in memory (Redis was down) into Redis, oldest first."""
        if self.redis is None or not self._memory:
            return 0
        moved = 0
        while self._memory:
            entry = self._memory[0]
            try:
                # RPUSH: they are older than anything pending, so they go to the taking end.
                await self._redis(self.redis.rpush(self.pending_key, entry.dumps()))
            except _REDIS_ERRORS:
                break
            self._memory.popleft()
            moved += 1
        return moved

    # --- delivering ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """Put writes left in flight by a stopped daemon back in the queue (at start)."""
        if self.redis is None:
            return 0
        moved = 0
        try:
            while await self._redis(self.redis.lmove(self.processing_key, self.pending_key,
                                                     "RIGHT", "RIGHT")) is not None:
                moved += 1
        except _REDIS_ERRORS as exc:
            log.warning("could not recover in-flight outbox writes now (%s); will retry",
                        describe_error(exc))
        if moved:
            log.info("Supabase outbox: %d write(s) left in flight by an earlier run re-queued",
                     moved)
        return moved

    async def claim(self) -> Claim | None:
        """The oldest write, or None. In-memory writes go first: they are the ones at risk."""
        if self._memory:
            return Claim(self._memory[0], "memory")
        if self.redis is None:
            return None
        while True:
            try:
                raw = await self._redis(self.redis.lmove(self.pending_key, self.processing_key,
                                                         "RIGHT", "LEFT"))
            except _REDIS_ERRORS:
                return None
            if raw is None:
                return None
            try:
                return Claim(OutboxEntry.loads(raw), "redis", raw)
            except (ValueError, KeyError, TypeError) as exc:
                # Scrubbed and cut short: a ValueError quotes the value it could not convert.
                reason = scrub(f"{type(exc).__name__}: {exc}")
                log.error("undecodable Supabase outbox entry moved to dead letters: %s", reason)
                await self._park({"error": {"code": "undecodable", "message": reason},
                                  "raw": raw.decode("utf-8", "replace")
                                  if isinstance(raw, bytes) else raw}, raw)

    async def ack(self, claim: Claim) -> None:
        """The write is in Supabase: forget it."""
        if claim.source == "memory":
            self._remove_memory(claim.entry)
            return
        try:
            await self._redis(self.redis.lrem(self.processing_key, 1, claim.raw))
        except _REDIS_ERRORS as exc:
            # It stays in processing and is delivered again after a restart: harmless, the
            # upserts are idempotent.
            log.warning("could not remove a delivered write from the outbox (%s)",
                        describe_error(exc))

    async def dead_letter(self, claim: Claim, record: dict[str, Any]) -> None:
        """Park a rejected write (``record`` says why) and take it out of the queue."""
        record = {"failed_at": utc_now_iso(), **record}
        if claim.source == "memory":
            self._remove_memory(claim.entry)
            self._memory_dead.appendleft(record)
            return
        await self._park(record, claim.raw)

    async def _park(self, record: dict[str, Any], raw: str | bytes | None) -> None:
        payload = json.dumps(record, ensure_ascii=False, default=str)
        try:
            pipe = quiet_pipeline(self.redis)  # the dead letter holds the content
            pipe.lpush(self.dead_key, payload)
            pipe.ltrim(self.dead_key, 0, self.dead_limit - 1)
            if raw is not None:
                pipe.lrem(self.processing_key, 1, raw)  # type: ignore[arg-type]  # bytes work
            await self._redis(pipe.execute())
        except _REDIS_ERRORS as exc:
            self._memory_dead.appendleft(record)
            log.warning("dead letter kept in memory only (Redis failed: %s)", describe_error(exc))

    def _remove_memory(self, entry: OutboxEntry) -> None:
        for index, candidate in enumerate(self._memory):
            if candidate is entry:
                del self._memory[index]
                return

    # --- reading ------------------------------------------------------------------------------

    async def stats(self) -> OutboxStats:
        """Depth (pending + in flight), age of the oldest write, dead letters. Never raises."""
        now = time.time()
        oldest = [e.enqueued_at for e in list(self._memory)[:1]]
        depth = len(self._memory)
        dead = len(self._memory_dead)
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.llen(self.pending_key)
                pipe.llen(self.processing_key)
                pipe.llen(self.dead_key)
                pipe.lindex(self.pending_key, -1)
                pipe.lindex(self.processing_key, -1)
                pending, processing, dead_redis, oldest_pending, oldest_processing = (
                    await self._redis(pipe.execute()))
                depth += int(pending) + int(processing)
                dead += int(dead_redis)
                for raw in (oldest_pending, oldest_processing):
                    if raw:
                        try:
                            oldest.append(float(json.loads(raw)["enqueued_at"]))
                        except (ValueError, KeyError, TypeError):
                            pass
            except _REDIS_ERRORS:
                pass
        self.last_stats = OutboxStats(
            depth=depth, oldest_age_s=max(0.0, now - min(oldest)) if oldest and depth else 0.0,
            dead_letters=dead, backend=self.backend, redis_ok=self.redis_ok,
            in_memory=len(self._memory))
        return self.last_stats

    async def pending_for(self, continuation_id: str,
                          scan_limit: int = 50_000) -> list[OutboxEntry]:
        """Writes of one conversation not yet in Supabase (so history can include them)."""
        found = [e for e in self._memory if e.continuation_id == continuation_id]
        if self.redis is None:
            return found
        needle = json.dumps(continuation_id)
        try:
            for key in (self.processing_key, self.pending_key):
                for raw in await self._redis(self.redis.lrange(key, 0, scan_limit - 1)):
                    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                    if needle not in text:
                        continue
                    try:
                        entry = OutboxEntry.loads(raw)
                    except (ValueError, KeyError, TypeError):
                        continue
                    if entry.continuation_id == continuation_id:
                        found.append(entry)
        except _REDIS_ERRORS:
            pass
        return found

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters (Redis first, then memory), for a person to inspect."""
        records = list(self._memory_dead)[:limit]
        if self.redis is not None:
            try:
                for raw in await self._redis(self.redis.lrange(self.dead_key, 0, limit - 1)):
                    records.append(json.loads(raw))
            except _REDIS_ERRORS:
                pass
        return records[:limit]
