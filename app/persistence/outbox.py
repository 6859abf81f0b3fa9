"""The durable outbox: chat turns wait here until Supabase has them.

With Redis (``REDIS_URL``) the outbox is a Redis stream read by a consumer group, so any number
of daemons can share it and a restart or a crash loses nothing:

- ``exai:supabase:outbox:stream`` -- the writes not yet in Supabase (``XADD``), oldest first.
  Every daemon is a consumer of the group ``exai-outbox`` under its own name (its
  ``service.instance.id``, ``EXAI_INSTANCE_ID``). ``XREADGROUP`` hands each new write to one
  consumer only, which owns it (in the group's pending entries list) until it acknowledges it;
  a delivered write is acknowledged and deleted (``XACK`` + ``XDEL``), so the stream's length is
  the backlog of all daemons together.
- A daemon that holds a write refreshes its claim while it delivers (``XCLAIM ... JUSTID``), so
  a slow or retried delivery is never taken from a live daemon. A write whose owner has not
  touched it for ``claim_idle_secs`` (the daemon was killed, or hangs) is taken over by another
  daemon (``XAUTOCLAIM``) and delivered by it. A daemon restarted under the same name first
  takes back its own unfinished writes. Delivery is at least once (a daemon stalled past the
  idle time may finish a write another has reclaimed); the idempotent upserts make the effect
  exactly once.
- ``exai:supabase:outbox:dead`` -- writes Supabase refused (poison rows), kept for a person.

An earlier version kept pending writes in the list ``exai:supabase:outbox`` and the write in
flight in ``exai:supabase:outbox:processing``: at start, whatever is left in them is moved into
the stream, atomically one write at a time (nothing lost, nothing doubled).

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

from redis.exceptions import RedisError, ResponseError

from app.storage.redis_store import describe_error, quiet_pipeline
from app.timestamps import utc_now_iso
from otel.redaction import scrub

log = logging.getLogger("exai.persistence")

DEFAULT_PREFIX = "exai:supabase:outbox"
GROUP = "exai-outbox"
FIELD = "entry"  # the stream entry's one field: the write, as JSON
DEFAULT_CLAIM_IDLE_SECS = 60.0
# A consumer without writes and silent this many idle times is forgotten (it re-joins by reading).
FORGET_CONSUMER_IDLE_FACTOR = 10
# One write from an earlier version's lists into the stream, atomically: never lost, never doubled.
_MIGRATE_ONE = """
local raw = redis.call('RPOP', KEYS[1])
if raw then redis.call('XADD', KEYS[2], '*', ARGV[1], raw) end
return raw and 1 or 0
"""
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
    stream_id: str | None = None  # the stream entry's id (Redis)


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
                 redis_timeout_secs: float = 2.0, consumer: str | None = None,
                 claim_idle_secs: float = DEFAULT_CLAIM_IDLE_SECS,
                 on_drop: Callable[[OutboxEntry], None] | None = None) -> None:
        self.redis = redis
        self.stream_key = f"{prefix}:stream"
        self.group = GROUP
        # This daemon's name in the group; unique among the daemons running at one time.
        self.consumer = consumer or uuid.uuid4().hex
        self.claim_idle_secs = claim_idle_secs
        # The lists of the version before the stream, emptied into it by ``recover``.
        self.pending_key = prefix
        self.processing_key = f"{prefix}:processing"
        self.dead_key = f"{prefix}:dead"
        self.memory_limit = memory_limit
        self.dead_limit = dead_limit
        self.redis_timeout_secs = redis_timeout_secs
        self._on_drop = on_drop
        self._memory: deque[OutboxEntry] = deque()
        self._memory_dead: deque[dict[str, Any]] = deque(maxlen=dead_limit)
        # Read this consumer's own unacknowledged writes before new ones (after a restart under
        # the same name, or an acknowledgement Redis did not take).
        self._own_pending_unread = True
        self.redis_ok: bool | None = None if redis is None else True
        self.last_stats = OutboxStats(backend=self.backend)

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    async def _redis(self, coro: Any) -> Any:
        try:
            result = await asyncio.wait_for(coro, self.redis_timeout_secs)
        except _REDIS_ERRORS as exc:
            if isinstance(exc, ResponseError) and str(exc).startswith(("BUSYGROUP", "NOGROUP")):
                raise  # the consumer group exists already / not yet: Redis itself is fine
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
                await self._redis(self.redis.xadd(self.stream_key, {FIELD: entry.dumps()}))
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
                await self._redis(self.redis.xadd(self.stream_key, {FIELD: entry.dumps()}))
            except _REDIS_ERRORS:
                break
            self._memory.popleft()
            moved += 1
        return moved

    # --- delivering ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start: join the consumer group and move writes an earlier version left in its
        lists into the stream. Returns how many were moved. Writes other daemons hold are left
        alone: a write is taken from its owner only once it is idle (``claim``)."""
        if self.redis is None:
            return 0
        self._own_pending_unread = True
        moved = 0
        try:
            await self._ensure_group()
            # The write an old daemon had in flight is the oldest; then pending, oldest first.
            for key in (self.processing_key, self.pending_key):
                while await self._redis(self.redis.eval(_MIGRATE_ONE, 2, key, self.stream_key,
                                                        FIELD)):
                    moved += 1
            await self._forget_idle_consumers()
        except _REDIS_ERRORS as exc:
            log.warning("could not prepare the Supabase outbox stream now (%s); will retry",
                        describe_error(exc))
        if moved:
            log.info("Supabase outbox: %d write(s) an earlier version left in its lists moved "
                     "to the stream", moved)
        return moved

    async def _ensure_group(self) -> None:
        try:
            # From id 0: writes added before the group existed are delivered too.
            await self._redis(self.redis.xgroup_create(self.stream_key, self.group, id="0",
                                                       mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _forget_idle_consumers(self) -> None:
        """Drop consumers that hold nothing and were silent for long (restarts with fresh ids
        would otherwise pile up). A live one is only re-created by its next read."""
        limit_ms = self.claim_idle_secs * 1000 * FORGET_CONSUMER_IDLE_FACTOR
        for consumer in await self._redis(self.redis.xinfo_consumers(self.stream_key,
                                                                     self.group)):
            name = _text(consumer["name"])
            if name != self.consumer and not int(consumer["pending"]) and \
                    int(consumer["idle"]) > limit_ms:
                await self._redis(self.redis.xgroup_delconsumer(self.stream_key, self.group,
                                                                name))

    async def claim(self) -> Claim | None:
        """The next write, or None. In-memory writes go first: they are the ones at risk. Then
        this consumer's own unfinished ones, then writes abandoned by another consumer (idle
        for ``claim_idle_secs``), then new ones."""
        if self._memory:
            return Claim(self._memory[0], "memory")
        if self.redis is None:
            return None
        for _ in range(100):  # past deleted and undecodable entries; bounded, Redis may be odd
            try:
                found = await self._next_stream_entry()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    return None
                try:  # the stream was deleted (Redis flushed): start the group again
                    await self._ensure_group()
                    found = await self._next_stream_entry()
                except _REDIS_ERRORS:
                    return None
            except _REDIS_ERRORS:
                return None
            if found is None:
                return None
            stream_id, fields = found
            raw = _field(fields)
            if raw is None:  # deleted while pending (delivered by someone else): done
                try:
                    await self._finish(stream_id)
                except _REDIS_ERRORS:
                    return None
                continue
            try:
                return Claim(OutboxEntry.loads(raw), "redis", raw, stream_id)
            except (ValueError, KeyError, TypeError) as exc:
                # Scrubbed and cut short: a ValueError quotes the value it could not convert.
                reason = scrub(f"{type(exc).__name__}: {exc}")
                log.error("undecodable Supabase outbox entry moved to dead letters: %s", reason)
                await self._park({"error": {"code": "undecodable", "message": reason},
                                  "raw": raw.decode("utf-8", "replace")
                                  if isinstance(raw, bytes) else raw}, stream_id)
        return None

    async def _next_stream_entry(self) -> tuple[str, Any] | None:
        redis = self.redis
        if self._own_pending_unread:
            own = await self._redis(redis.xreadgroup(self.group, self.consumer,
                                                     {self.stream_key: "0"}, count=1))
            entries = own[0][1] if own else []
            if entries:
                return _text(entries[0][0]), entries[0][1]
            self._own_pending_unread = False
        cursor: Any = "0-0"
        for _ in range(10):  # XAUTOCLAIM scans at most 10 pending entries a call
            cursor, claimed, *_deleted = await self._redis(redis.xautoclaim(
                self.stream_key, self.group, self.consumer,
                int(self.claim_idle_secs * 1000), cursor, count=1))
            if claimed:
                stream_id, fields = claimed[0]
                log.warning("Supabase outbox: took over write %s, abandoned by another daemon "
                            "(idle for over %.0f s)", _text(stream_id), self.claim_idle_secs)
                return _text(stream_id), fields
            if _text(cursor) == "0-0":
                break
        new = await self._redis(redis.xreadgroup(self.group, self.consumer,
                                                 {self.stream_key: ">"}, count=1))
        entries = new[0][1] if new else []
        return (_text(entries[0][0]), entries[0][1]) if entries else None

    async def touch(self, claim: Claim) -> None:
        """Refresh this consumer's hold on a write it is still delivering (resets its idle
        time), so no other daemon takes it over. Never raises."""
        if claim.source != "redis" or claim.stream_id is None:
            return
        try:
            await self._redis(self.redis.xclaim(self.stream_key, self.group, self.consumer, 0,
                                                [claim.stream_id], justid=True))
        except _REDIS_ERRORS:
            pass

    async def release(self, claim: Claim) -> None:
        """Give up a write without delivering it (the daemon stops): it stays pending, marked
        idle for ``claim_idle_secs`` already, so the next daemon to look takes it over at once.
        Never raises."""
        if claim.source != "redis" or claim.stream_id is None:
            return
        try:
            await self._redis(self.redis.xclaim(self.stream_key, self.group, self.consumer, 0,
                                                [claim.stream_id], justid=True,
                                                idle=int(self.claim_idle_secs * 1000) + 1))
        except _REDIS_ERRORS:
            pass

    async def ack(self, claim: Claim) -> None:
        """The write is in Supabase: forget it."""
        if claim.source == "memory":
            self._remove_memory(claim.entry)
            return
        try:
            await self._finish(claim.stream_id)
        except _REDIS_ERRORS as exc:
            # It stays pending for this consumer and is delivered again: harmless, the upserts
            # are idempotent.
            self._own_pending_unread = True
            log.warning("could not remove a delivered write from the outbox (%s)",
                        describe_error(exc))

    async def _finish(self, stream_id: str | None) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream_key, self.group, stream_id)
        pipe.xdel(self.stream_key, stream_id)
        await self._redis(pipe.execute())

    async def dead_letter(self, claim: Claim, record: dict[str, Any]) -> None:
        """Park a rejected write (``record`` says why) and take it out of the queue."""
        record = {"failed_at": utc_now_iso(), **record}
        if claim.source == "memory":
            self._remove_memory(claim.entry)
            self._memory_dead.appendleft(record)
            return
        await self._park(record, claim.stream_id)

    async def _park(self, record: dict[str, Any], stream_id: str | None) -> None:
        payload = json.dumps(record, ensure_ascii=False, default=str)
        try:
            pipe = quiet_pipeline(self.redis)  # the dead letter holds the content
            pipe.lpush(self.dead_key, payload)
            pipe.ltrim(self.dead_key, 0, self.dead_limit - 1)
            if stream_id is not None:
                pipe.xack(self.stream_key, self.group, stream_id)
                pipe.xdel(self.stream_key, stream_id)
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
        """Depth (pending + in flight, all daemons together: the stream's length), age of the
        oldest write, dead letters. Never raises."""
        now = time.time()
        oldest = [e.enqueued_at for e in list(self._memory)[:1]]
        depth = len(self._memory)
        dead = len(self._memory_dead)
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.xlen(self.stream_key)
                pipe.llen(self.dead_key)
                pipe.xrange(self.stream_key, "-", "+", count=1)
                length, dead_redis, first = await self._redis(pipe.execute())
                depth += int(length)
                dead += int(dead_redis)
                for _, fields in first:
                    try:
                        oldest.append(float(json.loads(_field(fields))["enqueued_at"]))
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
            for _, fields in await self._redis(self.redis.xrange(self.stream_key, "-", "+",
                                                                 count=scan_limit)):
                raw = _field(fields)
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                if not text or needle not in text:
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


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: Any) -> Any:
    """The write in a stream entry's fields (keys are bytes on a client that does not decode)."""
    fields = fields or {}
    return fields.get(FIELD, fields.get(FIELD.encode()))
