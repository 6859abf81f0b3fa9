"""Fixtures for the thread-store tests: a real redis-server of their own (the shared one,
``redis_server``, is in tests/conftest.py) and in-memory OpenTelemetry providers.

The providers are local to each test and never installed globally, so these tests neither depend
on nor disturb the suite's global telemetry fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.storage.redis_client import create_redis_client
from app.storage.threads import ThreadStore, create_thread_store
from otel.setup import RedisInstrumentation
from tests.harness.otel_capture import InMemoryTelemetry as Telemetry
from tests.harness.otel_capture import in_memory_telemetry
from tests.harness.procs import ManagedProcess
from tests.harness.redis_server import redis_process


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with in_memory_telemetry() as captured:
        yield captured


@pytest.fixture
def traced_redis(telemetry: Telemetry) -> Iterator[Telemetry]:
    """Redis instrumented on this test's tracer provider, as the daemon instruments it."""
    instrumentation = RedisInstrumentation().instrument(telemetry.tracer_provider)
    if not instrumentation.owned:
        pytest.skip("Redis is already instrumented globally by another fixture")
    yield telemetry
    instrumentation.uninstrument()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A redis-server this test alone may kill and restart."""
    proc = redis_process(tmp_path / "redis").start()
    yield proc
    proc.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[str], Any]]:
    """``make_client(url)``: the daemon's shared Redis client for ``url``, closed afterwards."""
    clients: list[Any] = []

    def make(url: str) -> Any:
        client = create_redis_client(url)
        if client is not None:
            clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def make_store(telemetry: Telemetry,
                     make_client: Callable[[str], Any]) -> AsyncIterator[Callable[..., Any]]:
    """Build (and start) stores through the real factories; close them all afterwards."""
    stores: list[ThreadStore] = []

    async def make(redis_url: str = "", ttl_hours: float = 3.0, max_turns: int = 20,
                   retry_secs: float = 0.2) -> ThreadStore:
        settings = Settings(_env_file=None, redis_url=redis_url,  # type: ignore[call-arg]
                            conversation_timeout_hours=ttl_hours,
                            max_conversation_turns=max_turns, redis_retry_secs=retry_secs)
        store = create_thread_store(settings, telemetry.instruments, make_client(redis_url))
        stores.append(store)
        await store.start()
        return store

    yield make
    for store in stores:
        await store.aclose()
