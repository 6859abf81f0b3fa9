"""The composition root: builds every part of the daemon from settings and runs it."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from otel.setup import Telemetry

from . import __version__, browser_guard
from .config import Settings
from .health import HealthServer, build_report, providers_component, resource_readings
from .limits import Slots
from .persistence import create_archive
from .providers.registry import ProviderRegistry
from .providers.table import PROVIDERS
from .server import WebSocketServer
from .session import SessionServices
from .shared_limits import SharedLimits
from .storage.redis_client import create_redis_client
from .storage.threads import create_thread_store
from .tools.base import ToolRegistry
from .tools.chat import ChatTool
from .tools.conversations import Conversations
from .tools.info import ListModelsTool, StatusTool, VersionTool

log = logging.getLogger(__name__)

# Shares of the shutdown deadline (EXAI_SHUTDOWN_TIMEOUT_SECS), counted from the signal.
SESSIONS_SHARE = 0.5    # stop listening, finish or cancel calls, close the sessions
TELEMETRY_SHARE = 0.25  # kept for the telemetry flush; the other resources close in between
# After the deadline, what may still pass before the process is ended regardless.
EXIT_GRACE_SECS = 0.5


class Daemon:
    """Owns the WebSocket server, the health endpoint, providers and storage."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        instruments = telemetry.instruments
        self.providers = ProviderRegistry(settings, instruments)
        # One client for threads and outbox; closed here, after both (stop()).
        self.redis = create_redis_client(settings.redis_url)
        self.threads = create_thread_store(settings, instruments, self.redis)
        self.archive = create_archive(settings, instruments, redis=self.redis)
        provider_slots = build_provider_slots(settings, self.redis)
        tools = ToolRegistry([
            ChatTool(self.providers, provider_slots, Conversations(
                self.threads, self.archive, max_turns=settings.max_conversation_turns,
                max_turn_chars=settings.max_turn_chars)),
            ListModelsTool(self.providers),
            StatusTool(self.health_report),
            VersionTool(),
        ])
        self.ws = WebSocketServer(settings, SessionServices(
            tools=tools,
            global_slots=Slots("global", settings.global_max_inflight, settings.slot_wait_secs),
            instruments=instruments,
            telemetry_enabled=telemetry.enabled,
            session_max_inflight=settings.session_max_inflight,
            slot_wait_secs=settings.slot_wait_secs,
            rate_limit_per_sec=settings.rate_limit_per_sec,
            rate_limit_burst=settings.rate_limit_burst,
            tool_timeout_secs=settings.tool_timeout_secs,
        ))
        self.health = HealthServer(
            settings.health_host, settings.health_port, self.health_report,
            guard=functools.partial(browser_guard.refusal, bind_host=settings.health_host,
                                    allowed_origins=settings.allowed_origins,
                                    allowed_hosts=settings.allowed_hosts))

    async def health_report(self) -> dict[str, Any]:
        components: dict[str, dict[str, Any]] = {
            "storage": await self.threads.health(),
            "supabase": self.archive.health(),
            "providers": providers_component(self.providers.list_models()),
            **resource_readings(),
        }
        return build_report(now=datetime.now(UTC), version=__version__,
                            serving=self.ws.serving, components=components,
                            sessions=self.ws.stats())

    async def start(self) -> None:
        unsafe = self.settings.unsafe_bind_reason()
        if unsafe:
            raise SystemExit(f"refusing to start: {unsafe}")
        if not self.settings.auth_enabled:
            log.warning("EXAI_WS_TOKEN is empty: authentication is OFF; any local process can "
                        "connect. Set EXAI_WS_TOKEN to require a token.")
        await self.threads.start()
        await self.archive.start()
        await self.ws.start()
        await self.health.start()
        log.info("health on http://%s:%s/health", self.settings.health_host, self.health.port)

    async def stop(self, deadline_secs: float | None = None) -> None:
        """Stop within ``deadline_secs`` (default: the shutdown deadline) less the telemetry's
        share, whatever clients or backends do.

        Half the deadline goes to the WebSocket side (no new connections, calls finished or
        cancelled, sessions closed). The health server, archive, thread store and provider
        clients then close in what is left before the telemetry's share; one that does not is
        abandoned with a warning, since the process is about to exit anyway.
        """
        total = self.settings.shutdown_timeout_secs if deadline_secs is None else deadline_secs
        closed_by = asyncio.get_running_loop().time() + total * (1 - TELEMETRY_SHARE)
        await _close_by("WebSocket server", lambda: self.ws.stop(total * SESSIONS_SHARE),
                        closed_by)
        await _close_by("health server", self.health.stop, closed_by)
        await _close_by("Supabase archive", self.archive.aclose, closed_by)
        await _close_by("thread store", self.threads.aclose, closed_by)
        if self.redis is not None:
            await _close_by("Redis client", self.redis.aclose, closed_by)
        await _close_by("provider clients", self.providers.aclose, closed_by)

    async def run_until_signalled(self) -> float:
        """Start, serve until SIGINT/SIGTERM, then stop within the shutdown deadline.

        Returns that deadline (``time.monotonic()``) for the telemetry flush that comes last.
        From the signal on, a backstop ends the process shortly after the deadline if anything
        (a stuck task, an executor thread, an exit handler) still holds it: Docker's SIGKILL
        would come soon after and say nothing.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            deadline = time.monotonic() + self.settings.shutdown_timeout_secs
            exit_after(deadline + EXIT_GRACE_SECS)
            log.info("stopping within %.1f s", self.settings.shutdown_timeout_secs)
            await self.stop()
        return deadline


def build_provider_slots(settings: Settings, redis: Redis | None) -> dict[str, Slots]:
    """Each provider's concurrency slots: the daemon's own, or with EXAI_SHARED_PROVIDER_LIMITS
    (and REDIS_URL) counted across every daemon on that Redis."""
    shared = None
    if settings.shared_provider_limits:
        if redis is None:
            log.warning("EXAI_SHARED_PROVIDER_LIMITS=true needs REDIS_URL; provider concurrency "
                        "limits are per daemon")
        else:
            shared = SharedLimits(redis, settings.redis_retry_secs)
    slots: dict[str, Slots] = {}
    for entry in PROVIDERS:
        limit = settings.provider(entry).max_inflight
        slots[entry.key] = (Slots("provider", limit, settings.slot_wait_secs) if shared is None
                            else shared.slots("provider", entry.key, limit,
                                              settings.slot_wait_secs))
    return slots


async def _close_by(name: str, close: Callable[[], Awaitable[object]], deadline: float) -> None:
    """Await ``close()`` until ``deadline`` (event loop time), then give up on it."""
    try:
        async with asyncio.timeout_at(deadline):
            await close()
    except TimeoutError:
        log.warning("stopping: %s did not close in time, abandoned", name)


def exit_after(deadline: float) -> None:
    """End the process at ``deadline`` (``time.monotonic()``) unless it has exited by then."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _overran)
    timer.daemon = True  # never itself a reason to wait at exit
    timer.start()


def _overran() -> None:
    log.error("stopping took longer than the shutdown deadline: exiting now")
    exit_now(1)


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown (exit handlers, joining threads, the
    final garbage collection), which ``os._exit`` skips along with every buffer: the console is
    flushed first."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
