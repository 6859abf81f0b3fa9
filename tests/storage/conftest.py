"""Fixtures for the thread-store tests: a real redis-server and in-memory OpenTelemetry providers.

The providers are local to each test and never installed globally, so these tests neither depend
on nor disturb the suite's global telemetry fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.config import Settings
from app.storage.threads import ThreadStore, create_thread_store
from otel.instruments import Instruments, create_instruments
from tests.harness.procs import ManagedProcess
from tests.harness.redis_server import redis_process


@dataclass
class Telemetry:
    instruments: Instruments
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected so far."""
        data = self.metrics.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments("test", tracer_provider, meter_provider)
    yield Telemetry(instruments, tracer_provider, spans, reader)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One redis-server for tests that do not stop it; ids are random, so tests do not collide."""
    proc = redis_process(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A redis-server this test alone may kill and restart."""
    proc = redis_process(tmp_path / "redis").start()
    yield proc
    proc.stop()


@pytest.fixture
async def make_store(telemetry: Telemetry) -> AsyncIterator[Callable[..., Any]]:
    """Build (and start) stores through the real factory; close them all afterwards."""
    stores: list[ThreadStore] = []

    async def make(redis_url: str = "", ttl_hours: float = 3.0, max_turns: int = 20,
                   retry_secs: float = 0.2) -> ThreadStore:
        settings = Settings(_env_file=None, redis_url=redis_url,  # type: ignore[call-arg]
                            conversation_timeout_hours=ttl_hours,
                            max_conversation_turns=max_turns, redis_retry_secs=retry_secs)
        store = create_thread_store(settings, telemetry.instruments)
        stores.append(store)
        await store.start()
        return store

    yield make
    for store in stores:
        await store.aclose()
