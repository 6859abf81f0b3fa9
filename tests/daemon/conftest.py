"""Fixtures for daemon tests: the real daemon in-process, a real Redis, the fake upstream over a
real socket, and telemetry captured by the SDK's in-memory exporters.

The daemon is configured through ``configure_telemetry`` exactly as ``exai serve`` does, except
that its exporters are in-memory ones, so what a test asserts is what would have been exported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import __version__
from app.client import DaemonClient
from app.config import Settings
from app.daemon import Daemon
from app.fake_llm import FakeLLMConfig, start_fake_llm
from otel.logs import configure_logging
from otel.setup import Telemetry, configure_telemetry
from tests.harness.exai_process import FAKE_KEY, TOKEN, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import ManagedProcess


@dataclass
class Captured:
    """What the daemon exported, read back from the in-memory exporters."""

    telemetry: Telemetry
    spans_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    logs_exporter: InMemoryLogRecordExporter

    def clear(self) -> None:
        self.spans_exporter.clear()
        self.logs_exporter.clear()

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def trace(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if format(s.context.trace_id, "032x") == trace_id]

    def logs(self) -> list[ReadableLogRecord]:
        return list(self.logs_exporter.get_finished_logs())

    def metrics(self) -> dict[str, list[Any]]:
        """Every exported data point, by metric name."""
        data = self.metric_reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


_CAPTURED: Captured | None = None


def _captured_telemetry() -> Captured:
    """Global providers can be set once per process, so the capture is built once."""
    global _CAPTURED
    if _CAPTURED is None:
        spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), \
            InMemoryMetricReader()
        telemetry = configure_telemetry(
            __version__, span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader],
            log_processors=[SimpleLogRecordProcessor(logs)])
        configure_logging("INFO", telemetry.logger_provider)
        _CAPTURED = Captured(telemetry, spans, reader, logs)
    return _CAPTURED


@pytest.fixture(scope="package")
def captured() -> Iterator[Captured]:
    capture = _captured_telemetry()
    yield capture
    # Leave library instrumentation as we found it for the other test packages.
    capture.telemetry.uninstrument()


@pytest.fixture
def capture(captured: Captured) -> Captured:
    captured.clear()
    return captured


@pytest.fixture(scope="module")
def fake_llm_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """``exai fake-llm`` as its own process, for tests of the ``exai`` commands as processes;
    its port is ``.port``."""
    proc, port = spawn_fake_llm(tmp_path_factory.mktemp("fake"))
    proc.port = port  # type: ignore[attr-defined]
    yield proc
    proc.stop()


class FakeUpstream(FakeUpstreamControl):
    """The in-process fake upstream's control API, and its ``port``."""

    def __init__(self, url: str, port: int) -> None:
        super().__init__(url)
        self.port = port


@pytest.fixture(scope="package")
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    runner, port = await start_fake_llm("127.0.0.1", 0, FakeLLMConfig(seed=7))
    yield FakeUpstream(f"http://127.0.0.1:{port}", port)
    await runner.cleanup()


@dataclass
class RunningDaemon:
    daemon: Daemon
    url: str
    health_url: str

    async def client(self, token: str = TOKEN, **kwargs: Any) -> DaemonClient:
        return await DaemonClient.connect(self.url, token, **kwargs)


DaemonFactory = Callable[..., Awaitable[RunningDaemon]]


def daemon_settings(upstream: FakeUpstream, redis_url: str = "", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "EXAI_WS_HOST": "127.0.0.1", "EXAI_WS_PORT": 0, "HEALTH_CHECK_PORT": 0,
        "EXAI_WS_TOKEN": TOKEN,
        "KIMI_API_KEY": FAKE_KEY, "KIMI_API_URL": f"{upstream.url}/v1",
        "GLM_API_KEY": FAKE_KEY, "GLM_API_URL": f"{upstream.url}/api/paas/v4",
        "REDIS_URL": redis_url, "EXAI_REDIS_RETRY_SECS": 0.3,
        "EXAI_PROVIDER_RETRY_BASE_SECS": 0.01, "EXAI_PROVIDER_RETRY_MAX_SECS": 2,
        "SUPABASE_URL": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
async def start_daemon(captured: Captured, fake_upstream: FakeUpstream,
                       redis_server: ManagedProcess) -> AsyncIterator[DaemonFactory]:
    """Start daemons with setting overrides; all are stopped after the test."""
    started: list[Daemon] = []
    await fake_upstream.areset(quiet=True)

    async def start(use_redis: bool = True, **overrides: Any) -> RunningDaemon:
        redis_url = redis_server.url if use_redis else ""  # type: ignore[attr-defined]
        daemon = Daemon(daemon_settings(fake_upstream, redis_url, **overrides), captured.telemetry)
        await daemon.start()
        started.append(daemon)
        return RunningDaemon(daemon, f"ws://127.0.0.1:{daemon.ws.port}",
                             f"http://127.0.0.1:{daemon.health.port}")

    yield start
    for daemon in started:
        await daemon.stop()


@pytest.fixture
async def running(start_daemon: DaemonFactory) -> RunningDaemon:
    return await start_daemon()


@pytest.fixture
async def client(running: RunningDaemon) -> AsyncIterator[DaemonClient]:
    client = await running.client()
    yield client
    await client.close()


async def eventually(check: Callable[[], Any], timeout: float = 10.0,
                     interval: float = 0.05) -> Any:
    """Poll an (async or sync) check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


logging.getLogger("websockets").setLevel(logging.WARNING)
