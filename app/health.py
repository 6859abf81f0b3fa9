"""The health report and the HTTP endpoint that serves it on its own port.

``build_report`` is pure: it turns component readings into the contract's JSON and decides the
overall status. The daemon is *unhealthy* (503) only when it cannot serve its main job: its
WebSocket listener is down or the machine is out of memory or disk. Anything it can work around
(Redis fallback, an open circuit, a Supabase backlog, no provider key) makes it *degraded*.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psutil
from aiohttp import web

from .timestamps import format_utc

MELBOURNE = ZoneInfo("Australia/Melbourne")
HEALTH_ROUTES = ("/health", "/healthz", "/health/ready")
CRITICAL_PERCENT = 95.0

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


def timestamps(now: datetime) -> dict[str, str]:
    """UTC for machines, Melbourne (AEDT/AEST) for people."""
    utc = now.astimezone(UTC).replace(microsecond=0)
    return {"timestamp_utc": format_utc(utc, "seconds"),
            "timestamp_melbourne": utc.astimezone(MELBOURNE).isoformat()}


def resource_readings(path: str = ".") -> dict[str, dict[str, Any]]:
    """Process memory and the disk the daemon runs from, each with its own status."""
    memory = psutil.virtual_memory()
    rss = psutil.Process(os.getpid()).memory_info().rss
    disk = psutil.disk_usage(path)
    return {
        "memory": {"status": UNHEALTHY if memory.percent >= CRITICAL_PERCENT else HEALTHY,
                   "process_rss_bytes": rss, "system_used_percent": memory.percent},
        "disk": {"status": UNHEALTHY if disk.percent >= CRITICAL_PERCENT else HEALTHY,
                 "free_bytes": disk.free, "used_percent": disk.percent},
    }


def overall_status(components: dict[str, dict[str, Any]], serving: bool) -> str:
    if not serving:
        return UNHEALTHY
    worst = max((_RANK.get(str(c.get("status")), 0) for c in components.values()), default=0)
    return {0: HEALTHY, 1: DEGRADED, 2: UNHEALTHY}[worst]


def build_report(*, now: datetime, version: str, serving: bool,
                 components: dict[str, dict[str, Any]],
                 sessions: dict[str, int]) -> dict[str, Any]:
    return {"status": overall_status(components, serving), **timestamps(now), "version": version,
            "serving": serving, "components": components, "sessions": sessions}


Guard = Callable[[str | None, str | None], str | None]
"""(Origin, Host) -> why the request is refused, or None: the WebSocket's browser guard."""


class HealthServer:
    """``/health``, ``/healthz``, ``/health/ready`` (503 when unhealthy) and ``/health/live``.

    The report needs no token, so a web page must not read it either: requests are put through
    the same browser guard as WebSocket upgrades (foreign ``Origin``, DNS-rebound ``Host``: 403).
    """

    def __init__(self, host: str, port: int,
                 report: Callable[[], Awaitable[dict[str, Any]]],
                 guard: Guard | None = None) -> None:
        self._host, self._port = host, port
        self._report = report
        self._guard = guard
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @web.middleware
    async def _refuse_browsers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        reason = self._guard(request.headers.get("Origin"), request.headers.get("Host")) \
            if self._guard is not None else None
        if reason is not None:
            return web.json_response({"error": reason}, status=403)
        return await handler(request)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._refuse_browsers])
        for route in HEALTH_ROUTES:
            app.router.add_get(route, self._health)
        app.router.add_get("/health/live", self._live)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        report = await self._report()
        return web.json_response(report, status=503 if report["status"] == UNHEALTHY else 200)

    async def _live(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", **timestamps(datetime.now(UTC))})


def providers_component(listing: dict[str, Any]) -> dict[str, Any]:
    """Provider health from the registry's listing: degraded when a circuit is not closed or
    no provider has an API key (chat cannot be answered, the other tools still work)."""
    providers = {key: {"configured": p["configured"], "circuit_state": p["circuit_state"]}
                 for key, p in listing["providers"].items()}
    degraded = (not any(p["configured"] for p in providers.values())
                or any(p["circuit_state"] != "closed" for p in providers.values()))
    return {"status": DEGRADED if degraded else HEALTHY, **providers}
