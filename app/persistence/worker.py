"""The background task that empties the outbox into Supabase.

One write at a time, oldest first: while Supabase is unreachable the worker retries the same
write with exponential backoff and jitter (everything behind it would fail the same way), and
when Supabase answers again the backlog drains at full speed. A write Supabase refuses for its
content (SQLSTATE class 22/23: too long, wrong role...) is a poison row: its bad messages go to
the dead-letter list with a clear logged error and a metric, its good messages are delivered,
and the queue moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, replace
from typing import Any, cast

from .. import backoff
from .errors import ArchiveError, RejectedWrite
from .outbox import Claim, Outbox, OutboxEntry
from .repository import SupabaseRepository
from .telemetry import SupabaseTelemetry
from .tuning import ArchiveTuning

log = logging.getLogger("exai.persistence")


class DeliveryWorker:
    """Delivers outbox writes with ``repository``; ``start()`` once, ``stop()`` at shutdown."""

    def __init__(self, outbox: Outbox, repository: SupabaseRepository,
                 telemetry: SupabaseTelemetry, tuning: ArchiveTuning) -> None:
        self.outbox = outbox
        self.repository = repository
        self.telemetry = telemetry
        self.tuning = tuning
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._stats_at = 0.0
        # What /health shows.
        self.delivered = 0
        self.dead_lettered = 0
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: dict[str, Any] | None = None
        self.consecutive_failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="exai-supabase-outbox")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, timeout_secs: float = 5.0) -> None:
        """Stop; a write in flight stays in the outbox (Redis: released, so another daemon, or
        this one restarted, delivers it)."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        # asyncio.wait never raises the task's own outcome (it may have died or been cancelled).
        done, _ = await asyncio.wait({task}, timeout=timeout_secs)
        if not done:
            task.cancel()
            await asyncio.wait({task})

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        await self.outbox.recover()
        await self._refresh_stats(force=True)
        while not self._stopping:
            try:
                await self.outbox.spill_memory_to_redis()
                claim = await self.outbox.claim()
                if claim is None:
                    await self._refresh_stats(force=True)
                    await self._sleep(self.tuning.idle_poll_secs)
                    continue
                await self._deliver_until_settled(claim)
                await self._refresh_stats()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must outlive any bug in one write
                log.exception("Supabase outbox worker: unexpected error; continuing")
                await self._sleep(self.tuning.idle_poll_secs)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for new work or shutdown."""
        self._wake.clear()
        if self._stopping:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _backoff(self, seconds: float) -> None:
        """Sleep between retries; only shutdown cuts it short (new work does not help)."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            await self._sleep(left)

    async def _refresh_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._stats_at >= self.tuning.stats_interval_secs:
            self._stats_at = now
            await self.outbox.stats()

    async def _deliver_until_settled(self, claim: Claim) -> None:
        """Deliver ``claim``, refreshing this daemon's hold on it meanwhile, so no other daemon
        takes over a write that is only slow or waiting for Supabase to come back. Stopped
        before it is settled, the hold is released: another daemon may take it at once."""
        keeper = (asyncio.create_task(self._keep_hold(claim), name="exai-supabase-outbox-hold")
                  if claim.source == "redis" else None)
        try:
            settled = await self._attempt_until_settled(claim)
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.wait({keeper})
        if not settled:
            await self.outbox.release(claim)

    async def _keep_hold(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self.tuning.claim_idle_secs / 3)
            await self.outbox.touch(claim)

    async def _attempt_until_settled(self, claim: Claim) -> bool:
        attempt = 0
        while not self._stopping:
            entry = claim.entry
            try:
                with self.telemetry.delivery_span(entry.continuation_id, len(entry.messages),
                                                  attempt + 1, entry.trace_context):
                    rejected = await self.deliver(entry)
            except RejectedWrite as exc:
                await self._dead_letter(claim, claim.entry, [(None, exc)])
                self._record_success()  # Supabase answered: it is reachable
                return True
            except ArchiveError as exc:
                self._record_failure(exc)
                self.telemetry.failure(exc.error_type, "retry")
                if claim.source == "memory" and await self.outbox.spill_memory_to_redis():
                    return True  # now durable in Redis; taken from there on the next round
                delay = backoff.equal_jitter(attempt, self.tuning.backoff_base_secs,
                                             self.tuning.backoff_max_secs)
                attempt += 1
                log.warning("Supabase write for conversation %s failed (attempt %d, %s: %s); "
                            "retrying in %.2f s", claim.entry.continuation_id, attempt,
                            exc.error_type, exc.message, delay)
                await self._refresh_stats()
                await self._backoff(delay)
                continue
            if rejected:
                bad = cast("list[dict[str, Any]]", [message for message, _ in rejected])
                await self._dead_letter(claim, replace(claim.entry, messages=bad), rejected)
            else:
                await self.outbox.ack(claim)
            self.delivered += 1
            self._record_success()
            return True
        return False

    async def deliver(
            self, entry: OutboxEntry) -> list[tuple[dict[str, Any] | None, RejectedWrite]]:
        """Write one entry; returns the messages Supabase refused (the others are written).

        Raises ``RejectedWrite`` when the conversation row itself is refused (its messages cannot
        be written without it) and ``ArchiveUnavailable`` when Supabase cannot take it now.
        """
        conversation_id = await self.repository.upsert_conversation(entry.conversation)
        rows = [{**message, "conversation_id": conversation_id} for message in entry.messages]
        try:
            await self.repository.upsert_messages(rows)
            return []
        except RejectedWrite as exc:
            if len(rows) == 1:
                return [(entry.messages[0], exc)]
        # One bad message fails its whole batch: find it, and keep the good ones.
        rejected: list[tuple[dict[str, Any] | None, RejectedWrite]] = []
        for message, row in zip(entry.messages, rows, strict=True):
            try:
                await self.repository.upsert_messages([row])
            except RejectedWrite as exc:
                rejected.append((message, exc))
        return rejected

    async def _dead_letter(self, claim: Claim, entry: OutboxEntry,
                           rejected: list[tuple[dict[str, Any] | None, RejectedWrite]]) -> None:
        errors = []
        for message, exc in rejected:
            error = exc.summary()
            if message is not None:
                error["idempotency_key"] = message.get("idempotency_key")
                error["role"] = message.get("role")
            errors.append(error)
            self.telemetry.failure(exc.error_type, "dead_letter")
            # No row values in the log: ``details`` may hold the content.
            log.error("Supabase rejected %s of conversation %s: %s %s%s; moved to the "
                      "dead-letter list %s",
                      "a message" if message is not None else "the conversation row",
                      entry.continuation_id, exc.code, exc.message,
                      f" (hint: {exc.hint})" if exc.hint else "", self.outbox.dead_key)
        await self.outbox.dead_letter(claim, {"errors": errors, "entry": _entry_dict(entry)})
        self.dead_lettered += 1

    def _record_success(self) -> None:
        self.last_success_at = time.time()
        self.consecutive_failures = 0

    def _record_failure(self, exc: ArchiveError) -> None:
        self.last_failure_at = time.time()
        self.last_error = exc.summary()
        self.consecutive_failures += 1


def _entry_dict(entry: OutboxEntry) -> dict[str, Any]:
    return asdict(entry)
