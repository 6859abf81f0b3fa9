"""Fixtures for the MCP bridge: real processes only, as a user runs them.

The fake LLM upstream (``exai fake-llm``), the daemon (``exai serve``) and the bridge (``exai
mcp``, spawned by the MCP SDK's own stdio client) all export spans over OTLP/HTTP to a small
receiver in the test process, so a test sees exactly what a trace backend would.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.harness.exai_process import EXAI, TOKEN, daemon_env, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.otlp_sink import OtlpSink
from tests.harness.procs import ManagedProcess, free_port, port_open


def otel_env(sink: OtlpSink) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000", "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
    }


@pytest.fixture(scope="package")
def sink() -> Iterator[OtlpSink]:
    receiver = OtlpSink().start()
    yield receiver
    receiver.stop()


class FakeLLM(FakeUpstreamControl):
    """``exai fake-llm`` as its own process, and its control API."""

    def __init__(self, proc: ManagedProcess, port: int) -> None:
        super().__init__(f"http://127.0.0.1:{port}")
        self.proc, self.port = proc, port

    async def configure(self, **values: float) -> None:
        """No delays or errors, except ``values``."""
        quiet = {"latency_ms": 0, "ttft_ms": 0, "chunk_delay_ms": 0, "error_rate": 0}
        await self.aconfig(**{**quiet, **values})


@pytest.fixture(scope="package")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeLLM]:
    proc, port = spawn_fake_llm(tmp_path_factory.mktemp("fake"))
    yield FakeLLM(proc, port)
    proc.stop()


@dataclass
class Daemon:
    """``exai serve`` on fixed ports, so it can be killed and started again at the same address."""

    proc: ManagedProcess
    ws_port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"


def mcp_daemon_env(fake: FakeLLM, sink: OtlpSink, ws_port: int, health_port: int,
                   **overrides: str) -> dict[str, str]:
    return daemon_env(fake.port, ws_port, health_port, EXAI_RATE_LIMIT_PER_SEC="10000",
                      EXAI_PROVIDER_RETRY_BASE_SECS="0.01", **{**otel_env(sink), **overrides})


@pytest.fixture
async def start_daemon(fake_llm: FakeLLM, sink: OtlpSink, tmp_path: Path):
    """Start ``exai serve`` (settings as keyword overrides); all are stopped after the test."""
    started: list[ManagedProcess] = []
    await fake_llm.configure()

    def start(**overrides: str) -> Daemon:
        ws_port, health_port = free_port(), free_port()
        workdir = tmp_path / f"daemon-{len(started)}"
        workdir.mkdir()
        proc = ManagedProcess(
            name="exai-serve", argv=[EXAI, "serve"], cwd=workdir, log_path=workdir / "serve.log",
            env=mcp_daemon_env(fake_llm, sink, ws_port, health_port, **overrides),
            ready=lambda: port_open(health_port) and port_open(ws_port))
        started.append(proc.start())
        return Daemon(proc, ws_port)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
async def daemon(start_daemon) -> Daemon:
    return start_daemon()


def bridge_params(url: str, sink: OtlpSink, workdir: Path, **overrides: str) \
        -> StdioServerParameters:
    """``exai mcp`` as an MCP client config would start it (plus test telemetry settings)."""
    env = {"EXAI_WS_URL": url, "EXAI_WS_TOKEN": TOKEN, **otel_env(sink), **overrides}
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    return StdioServerParameters(command=EXAI, args=["mcp", "--log-level", "DEBUG"], env=env,
                                 cwd=workdir)


@asynccontextmanager
async def mcp_session(params: StdioServerParameters, log_path: Path) \
        -> AsyncIterator[ClientSession]:
    """An initialized SDK ``ClientSession`` on a fresh ``exai mcp`` process; its stderr in
    ``log_path``. Leaving closes stdin, which ends the bridge (and flushes its spans)."""
    with open(log_path, "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@pytest.fixture
def bridge(sink: OtlpSink, tmp_path: Path):
    """``async with bridge(url, **env) as session``: an MCP session through ``exai mcp``."""
    log_path = tmp_path / "bridge.log"

    def open_session(url: str, **overrides: str) -> Any:
        return mcp_session(bridge_params(url, sink, tmp_path, **overrides), log_path)

    open_session.log_path = log_path  # type: ignore[attr-defined]
    return open_session
