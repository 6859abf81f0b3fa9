"""The composition root: builds every part of the daemon from settings and runs it."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .config import Settings
from .health import HealthServer, build_report, providers_component, resource_readings
from .limits import Slots
from .persistence import create_archive
from .providers.registry import ProviderRegistry
from .server import WebSocketServer
from .session import SessionServices
from .storage.threads import create_thread_store
from .tools.base import ToolRegistry
from .tools.chat import ChatTool
from .tools.info import ListModelsTool, StatusTool, VersionTool
from otel.setup import Telemetry

log = logging.getLogger(__name__)


class Daemon:
    """Owns the WebSocket server, the health endpoint, providers and storage."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        instruments = telemetry.instruments
        self.providers = ProviderRegistry(settings, instruments)
        self.threads = create_thread_store(settings, instruments)
        self.archive = create_archive(settings, instruments)
        provider_slots = {
            "kimi": Slots("provider", settings.kimi_max_inflight, settings.slot_wait_secs),
            "glm": Slots("provider", settings.glm_max_inflight, settings.slot_wait_secs),
        }
        tools = ToolRegistry([
            ChatTool(self.providers, provider_slots, self.threads, self.archive,
                     settings.max_conversation_turns, settings.max_turn_chars),
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
        self.health = HealthServer(settings.health_host, settings.health_port, self.health_report)

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

    async def stop(self) -> None:
        await self.ws.stop()
        await self.health.stop()
        await self.archive.aclose()
        await self.threads.aclose()
        await self.providers.aclose()

    async def run_until_signalled(self) -> None:
        """Start, serve until SIGINT/SIGTERM, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await self.stop()

