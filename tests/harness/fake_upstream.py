"""The one client for the fake upstream's control API (``exai fake-llm``; see app/fake_llm.py).

``/_fake/config``, ``/_fake/faults``, ``/_fake/stats`` and ``/_fake/reset``, synchronously (for
process tests, the pipeline and dashboards harnesses and bench/) and asynchronously (``a``-prefixed
methods, for tests running in the event loop).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

# The fake's configuration with every delay, error, size and reasoning switched off.
QUIET_CONFIG: dict[str, Any] = {"latency_ms": 0, "ttft_ms": 0, "chunk_delay_ms": 0,
                                "error_rate": 0, "answer_bytes": 0, "raw_separator_text": False,
                                "reasoning_tokens": 0}


class FakeUpstreamControl:
    """The control API of the fake upstream at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def on_port(cls, port: int, host: str = "127.0.0.1") -> FakeUpstreamControl:
        return cls(f"http://{host}:{port}")

    def _endpoint(self, path: str) -> str:
        return f"{self.url}/_fake/{path}"

    @staticmethod
    def _body(status: int, count: int, retry_after: float | None,
              echo_key: bool) -> dict[str, Any]:
        return {"status": status, "count": count, "retry_after": retry_after,
                "echo_key": echo_key}

    # --- synchronous ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, self._endpoint(path), json=body, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def config(self, **changes: Any) -> dict[str, Any]:
        """Change the fake's configuration (the keys given only)."""
        return self._request("POST", "config", changes)

    def faults(self, status: int, count: int = 1, retry_after: float | None = None,
               echo_key: bool = False) -> dict[str, Any]:
        """Queue ``count`` error answers with ``status``."""
        return self._request("POST", "faults", self._body(status, count, retry_after, echo_key))

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "stats")

    def reset(self, quiet: bool = False) -> None:
        """Zero the counts and drop queued faults; ``quiet`` also restores ``QUIET_CONFIG``."""
        self._request("POST", "reset", {})
        if quiet:
            self.config(**QUIET_CONFIG)

    # --- asynchronous --------------------------------------------------------------------------

    async def _arequest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.request(method, self._endpoint(path), json=body)
            response.raise_for_status()
            return response.json()

    async def aconfig(self, **changes: Any) -> dict[str, Any]:
        return await self._arequest("POST", "config", changes)

    async def afaults(self, status: int, count: int = 1, retry_after: float | None = None,
                      echo_key: bool = False) -> dict[str, Any]:
        return await self._arequest("POST", "faults",
                                    self._body(status, count, retry_after, echo_key))

    async def astats(self) -> dict[str, Any]:
        return await self._arequest("GET", "stats")

    async def areset(self, quiet: bool = False) -> None:
        await self._arequest("POST", "reset", {})
        if quiet:
            await self.aconfig(**QUIET_CONFIG)

    async def await_stat(self, stat: str, value: int, timeout: float = 5.0) -> dict[str, Any]:
        """Poll the stats until ``stat`` reaches ``value`` (the fake notices aborts lazily);
        returns the last stats either way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stats = await self.astats()
            if stats[stat] >= value or loop.time() > deadline:
                return stats
            await asyncio.sleep(0.02)
