"""The facade the daemon uses: record turns, rebuild history, report health.

``record_turn`` only puts the turn in the outbox (Redis, or memory without it) and returns: a
chat reply never waits on Supabase. A background worker delivers it. ``load_history`` reads the
newest turns of a thread from Supabase (plus any of its writes still waiting in the outbox), for
a chat that continues a thread Redis no longer has.

Without ``SUPABASE_URL`` (or its key) ``build_archive`` returns a ``DisabledArchive``: every call
is a no-op and health says "not_configured".
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.storage.turns import Turn
from app.timestamps import format_utc
from otel.propagation import trace_context_carrier

from .errors import ArchiveError, ArchiveUnavailable
from .outbox import DEFAULT_PREFIX, Outbox, OutboxEntry
from .repository import SupabaseRepository
from .rows import conversation_row, message_rows, newest_in_order, turn_from_row
from .telemetry import SupabaseTelemetry
from .tuning import ArchiveTuning
from .worker import DeliveryWorker

if TYPE_CHECKING:
    from app.config import Settings
    from otel.instruments import Instruments

log = logging.getLogger("exai.persistence")

DEFAULT_HISTORY_LIMIT = 20
OUTCOME_FRESH_SECS = 30.0  # a delivery outcome this recent answers "is Supabase reachable?"
PING_CACHE_SECS = 10.0
PING_TIMEOUT_SECS = 3.0
HEALTHY, DEGRADED, NOT_CONFIGURED = "healthy", "degraded", "not_configured"


def _iso(epoch: float | None) -> str | None:
    return format_utc(datetime.fromtimestamp(epoch, UTC)) if epoch else None


class Archive:
    """Supabase persistence behind a durable outbox. ``start()`` before use, ``aclose()`` after."""

    configured = True

    def __init__(self, url: str, key: str, *, outbox: Outbox, telemetry: SupabaseTelemetry,
                 tuning: ArchiveTuning, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.host = urlsplit(url).hostname
        self._connect = functools.partial(
            SupabaseRepository.connect, url, key, telemetry,
            timeout_secs=tuning.request_timeout_secs, tracer_provider=tracer_provider,
            meter_provider=meter_provider)
        self.outbox = outbox
        self.telemetry = telemetry
        self.tuning = tuning
        self.history_limit = history_limit
        self.repository: SupabaseRepository | None = None
        self.worker: DeliveryWorker | None = None
        self._ping: tuple[float, bool, dict[str, Any] | None] | None = None
        self._probing: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        telemetry.register_gauges(lambda: self.outbox.last_stats)

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the Supabase client and start the delivery worker (no network call needed)."""
        async with self._start_lock:
            if self.repository is None:
                self.repository = await self._connect()
            if self.worker is None:
                self.worker = DeliveryWorker(self.outbox, self.repository, self.telemetry,
                                             self.tuning)
            self.worker.start()
        log.info("Supabase archive started (%s, outbox in %s)", self.host,
                 self.outbox.backend)

    async def drain(self, timeout_secs: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout_secs`` passed (False)."""
        deadline = time.monotonic() + timeout_secs
        while True:
            stats = await self.outbox.stats()
            if stats.depth == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            if self.worker:
                self.worker.wake()
            await asyncio.sleep(0.05)

    async def aclose(self, drain_timeout_secs: float | None = None) -> None:
        """Stop the worker and close connections. Without Redis, first try for a moment to
        deliver what waits in memory (it would be lost); with Redis nothing is lost anyway."""
        if drain_timeout_secs is None:
            drain_timeout_secs = 2.0 if self.outbox.backend == "memory" else 0.0
        if drain_timeout_secs > 0 and self.worker and self.worker.running:
            if not await self.drain(drain_timeout_secs):
                stats = self.outbox.last_stats
                if self.outbox.backend == "memory" or stats.in_memory:
                    log.error("Supabase archive closing with %d write(s) only in memory: they are "
                              "lost", stats.in_memory)
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.wait({self._probing})
            self._probing = None
        if self.worker:
            await self.worker.stop()
            self.worker = None
        if self.repository:
            await self.repository.aclose()
            self.repository = None

    # --- the chat tool's calls ----------------------------------------------------------------

    async def record_turn(self, continuation_id: str, session_id: str | None,
                          turns: Sequence[Turn], metadata: Mapping[str, Any] | None = None) -> None:
        """Queue a chat exchange for Supabase and return at once; never raises.

        ``turns`` are the turns this exchange added (typically the user turn and the assistant
        turn); passing the whole thread is also safe, since turns already archived map to the
        same idempotency keys. ``metadata`` (provider, model, usage...) goes on the conversation
        and on the assistant turns.
        """
        try:
            turns = list(turns)
            if not turns:
                return
            entry = OutboxEntry(
                continuation_id=continuation_id,
                conversation=conversation_row(continuation_id, session_id, turns, metadata),
                messages=message_rows(continuation_id, turns, metadata),
                trace_context=trace_context_carrier(),
            )
            await self.outbox.put(entry)
            if self.worker:
                self.worker.wake()
        except Exception:  # noqa: BLE001 - archiving must never fail a chat
            log.exception("could not queue conversation %s for Supabase", continuation_id)

    async def load_history(self, continuation_id: str,
                           limit: int | None = None) -> list[Turn] | None:
        """The newest ``limit`` turns of a thread, oldest first; None if Supabase has no such
        thread. Raises ``ArchiveUnavailable`` (an ``ArchiveError``) when Supabase cannot answer."""
        limit = self.history_limit if limit is None else limit
        if self.repository is None:
            raise ArchiveUnavailable("the Supabase archive is not started",
                                     error_type="not_started")
        conversation_id = await self.repository.conversation_id(continuation_id)
        rows = (await self.repository.newest_messages(conversation_id, limit)
                if conversation_id and limit > 0 else [])
        # Writes of this thread still in the outbox are part of its history too.
        waiting = [m for e in await self.outbox.pending_for(continuation_id) for m in e.messages]
        if conversation_id is None and not waiting:
            return None
        return [turn_from_row(row) for row in newest_in_order([*rows, *waiting], limit)]

    # --- health -------------------------------------------------------------------------------

    def _reachability(self) -> tuple[bool | None, dict[str, Any] | None, bool]:
        """(reachable, last error, fresh?) from the worker's last outcome or the last ping."""
        worker = self.worker
        now = time.time()
        if worker is not None:
            last = max(worker.last_success_at or 0, worker.last_failure_at or 0)
            if last and now - last < OUTCOME_FRESH_SECS:
                ok = (worker.last_success_at or 0) >= (worker.last_failure_at or 0)
                return ok, None if ok else worker.last_error, True
        if self._ping is not None:
            return self._ping[1], self._ping[2], now - self._ping[0] < PING_CACHE_SECS
        return None, None, False

    async def _probe(self) -> None:
        """Ping Supabase (when no delivery said anything lately) and re-read the outbox."""
        try:
            if not self._reachability()[2] and self.repository is not None:
                try:
                    await asyncio.wait_for(self.repository.ping(), PING_TIMEOUT_SECS)
                    self._ping = (time.time(), True, None)
                except ArchiveError as exc:
                    self._ping = (time.time(), False, exc.summary())
                except TimeoutError:
                    self._ping = (time.time(), False, {"code": None, "message": "ping timed out",
                                                       "hint": None, "error_type": "timeout"})
            await self.outbox.stats()
        finally:
            self._probing = None

    def health(self) -> dict[str, Any]:
        """The ``supabase`` health component, from what is known now; never blocks, never
        contains the key. When that knowledge is stale it starts a background probe, so the next
        call is fresh (``check_health()`` waits for it instead)."""
        if not self._reachability()[2] and self._probing is None:
            try:
                self._probing = self._start_probe()
            except RuntimeError:  # no event loop: report what is known
                pass
        return self._report()

    async def check_health(self) -> dict[str, Any]:
        """``health()`` after probing Supabase and re-reading the outbox."""
        if self._probing is None:
            self._probing = self._start_probe()
        await asyncio.shield(self._probing)
        return self._report()

    def _start_probe(self) -> asyncio.Task[None]:
        # Detached from the caller's context: the probe is shared by whoever asks next, so its
        # spans and logs must not join (or carry the trace id of) the call that started it.
        return asyncio.get_running_loop().create_task(self._probe(), name="supabase-probe",
                                                      context=contextvars.Context())

    def _report(self) -> dict[str, Any]:
        stats = self.outbox.last_stats
        reachable, error, _ = self._reachability()
        worker = self.worker
        reasons = []
        if reachable is False:
            reasons.append("supabase unreachable")
        if self.outbox.redis_ok is False:
            reasons.append("redis down: outbox in memory")
        if stats.oldest_age_s > self.tuning.stale_backlog_secs:
            reasons.append(f"backlog older than {int(self.tuning.stale_backlog_secs)} s")
        if worker is None or not worker.running:
            reasons.append("delivery worker not running")
        return {
            "status": DEGRADED if reasons else HEALTHY,
            "configured": True,
            "reasons": reasons,
            "host": self.host,
            "reachable": reachable,
            "last_error": error,
            "last_success_at": _iso(worker.last_success_at if worker else None),
            "durable": self.outbox.backend == "redis",
            "backlog": stats.as_dict(),
            "delivered": worker.delivered if worker else 0,
            "dead_lettered": worker.dead_lettered if worker else 0,
        }


class DisabledArchive:
    """What the daemon gets without Supabase settings: nothing is stored, health says why."""

    configured = False

    def __init__(self, reason: str = "SUPABASE_URL is not set",
                 status: str = NOT_CONFIGURED) -> None:
        self.reason = reason
        self.status = status

    async def start(self) -> None:
        log.info("Supabase archive off: %s", self.reason)

    async def aclose(self, drain_timeout_secs: float | None = None) -> None:
        return None

    async def drain(self, timeout_secs: float) -> bool:
        return True

    async def record_turn(self, continuation_id: str, session_id: str | None,
                          turns: Sequence[Turn], metadata: Mapping[str, Any] | None = None) -> None:
        return None

    async def load_history(self, continuation_id: str,
                           limit: int | None = None) -> list[Turn] | None:
        return None

    def health(self) -> dict[str, Any]:
        return {"status": self.status, "configured": False, "reason": self.reason}

    async def check_health(self) -> dict[str, Any]:
        return self.health()


def build_archive(settings: Settings, instruments: Instruments | None = None, *,
                  redis: Any = None, outbox_prefix: str = DEFAULT_PREFIX,
                  tracer_provider: Any = None, meter_provider: Any = None,
                  **options: Any) -> Archive | DisabledArchive:
    """The archive ``settings`` ask for.

    ``redis``: the process's shared ``redis.asyncio.Redis`` (``app.storage.redis_client``) to
    keep the outbox in, closed by its owner; without one the outbox is in memory.
    ``tracer_provider`` / ``meter_provider`` go to the httpx instrumentation (globals if None).
    ``options`` override the tunables read from ``settings`` (``EXAI_SUPABASE_*``): the fields
    of ``ArchiveTuning``, and the outbox's ``memory_limit`` and ``dead_limit``;
    ``history_limit`` (the chat tool passes its own limit) is an option only, and so is
    ``consumer``, the outbox's consumer name (default: ``settings.service_instance_id``, the
    daemon's ``service.instance.id``; tests give several archives in one process their own).
    """
    url = settings.supabase_url.strip()
    key = settings.supabase_service_role_key.get_secret_value().strip()
    if not url:
        return DisabledArchive("SUPABASE_URL is not set")
    if not key:
        return DisabledArchive("SUPABASE_SERVICE_ROLE_KEY is not set")
    if not re.match(r"^https?://[^/\s]+", url):
        # A typo must not stop the daemon from chatting; health shows it instead.
        log.error("Supabase archive off: SUPABASE_URL is not an http(s) URL")
        return DisabledArchive("SUPABASE_URL is not an http(s) URL", status=DEGRADED)
    if not (key.isascii() and key.isprintable()):
        # httpx would refuse the header and quote it, key and all, into every error, span and
        # /health answer; a line break pasted into the value is the usual cause.
        reason = "SUPABASE_SERVICE_ROLE_KEY holds a character an HTTP header cannot carry"
        log.error("Supabase archive off: %s (a line break?)", reason)
        return DisabledArchive(reason, status=DEGRADED)
    telemetry = SupabaseTelemetry(instruments, url)
    memory_limit = options.pop("memory_limit", settings.supabase_outbox_memory_limit)
    dead_limit = options.pop("dead_limit", settings.supabase_dead_letter_limit)
    consumer = options.pop("consumer", settings.service_instance_id)
    history_limit = options.pop("history_limit", DEFAULT_HISTORY_LIMIT)
    tuning = replace(ArchiveTuning.from_settings(settings), **options)
    outbox = Outbox(redis, prefix=outbox_prefix, memory_limit=memory_limit, dead_limit=dead_limit,
                    consumer=consumer, claim_idle_secs=tuning.claim_idle_secs,
                    on_drop=lambda _entry: telemetry.dropped.add(1))
    if redis is None:
        log.warning("Supabase outbox without Redis: writes waiting for Supabase are kept in "
                    "memory and lost if the daemon stops before Supabase takes them")
    return Archive(url, key, outbox=outbox, telemetry=telemetry, tuning=tuning,
                   history_limit=history_limit, tracer_provider=tracer_provider,
                   meter_provider=meter_provider)
