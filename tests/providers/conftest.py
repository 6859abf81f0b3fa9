"""Fixtures for the provider tests: a fake upstream on a real loopback socket, in-memory telemetry
(never the global providers) and registries pointed at the fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan

from app.config import Settings
from app.fake_llm import FakeLLMConfig, start_fake_llm
from app.limits import Slots
from app.providers.registry import ProviderRegistry
from app.storage.threads import create_thread_store
from app.storage.turns import Turn
from app.tools.base import CallContext
from app.tools.chat import ChatTool
from app.tools.conversations import Conversations
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.otel_capture import InMemoryTelemetry, in_memory_telemetry

# Looks like a real key on purpose, so that a leak would be found by a plain substring search.
API_KEY = "sk-test-0123456789abcdefCANARYKEY"


@dataclass
class FakeUpstream:
    """The in-process fake; its control API through the harness's one client."""

    runner: web.AppRunner
    port: int
    control: FakeUpstreamControl = field(init=False)

    def __post_init__(self) -> None:
        self.control = FakeUpstreamControl(self.url())

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stats(self) -> dict[str, int]:
        return await self.control.astats()

    async def fault(self, status: int, count: int = 1, retry_after: float | None = None,
                    echo_key: bool = False) -> None:
        await self.control.afaults(status, count, retry_after, echo_key)

    async def configure(self, **changes: float | bool) -> None:
        await self.control.aconfig(**changes)

    async def wait_for(self, stat: str, value: int, timeout: float = 5.0) -> dict[str, int]:
        """Poll the stats until ``stat`` reaches ``value`` (the upstream notices aborts lazily)."""
        return await self.control.await_stat(stat, value, timeout)


class Telemetry(InMemoryTelemetry):
    """The shared in-memory capture, plus views the provider tests read often."""

    def genai_spans(self) -> list[ReadableSpan]:
        return self.finished("chat ")

    def metrics_json(self) -> str:
        data = self.reader.get_metrics_data()
        return data.to_json() if data is not None else ""

    def spans_json(self) -> str:
        return json.dumps([json.loads(s.to_json()) for s in self.spans.get_finished_spans()])



@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    runner, port = await start_fake_llm("127.0.0.1", 0, FakeLLMConfig(seed=7))
    try:
        yield FakeUpstream(runner, port)
    finally:
        await runner.cleanup()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with in_memory_telemetry(Telemetry) as captured:
        yield captured


@dataclass
class SleepRecorder:
    """An injectable sleep that records what was asked and yields without waiting."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, secs: float) -> None:
        self.calls.append(secs)
        await asyncio.sleep(0)


@dataclass
class ManualClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def settings_for(fake: FakeUpstream | None, **overrides: Any) -> Settings:
    """Settings pointing both providers at the fake, with fast retries; overrides by alias."""
    values: dict[str, Any] = {
        "KIMI_API_URL": fake.url("/v1") if fake else "http://127.0.0.1:9/v1",
        "GLM_API_URL": fake.url("/api/paas/v4") if fake else "http://127.0.0.1:9/api/paas/v4",
        "KIMI_API_KEY": API_KEY,
        "GLM_API_KEY": API_KEY,
        "DEFAULT_MODEL": "glm-4.5-flash",
        "EXAI_PROVIDER_TIMEOUT_SECS": 5.0,
        "EXAI_PROVIDER_MAX_RETRIES": 2,
        "EXAI_PROVIDER_RETRY_BASE_SECS": 0.01,
        "EXAI_PROVIDER_RETRY_MAX_SECS": 5.0,
        "EXAI_CIRCUIT_FAILURE_THRESHOLD": 5,
        "EXAI_CIRCUIT_RESET_SECS": 30.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
async def make_registry(telemetry: Telemetry) -> AsyncIterator[Callable[..., ProviderRegistry]]:
    """Build registries on the test's telemetry; all are closed at the end of the test."""
    made: list[ProviderRegistry] = []

    def build(settings: Settings, **kwargs: Any) -> ProviderRegistry:
        registry = ProviderRegistry(settings, telemetry.instruments, **kwargs)
        made.append(registry)
        return registry

    yield build
    for registry in made:
        await registry.aclose()


class RecordingArchive:
    """Stands in for the Supabase archive: keeps what it was asked to record."""

    def __init__(self) -> None:
        self.recorded: list[list[Turn]] = []

    async def record_turn(self, continuation_id: str, session_id: str, turns: list[Turn],
                          meta: dict[str, Any]) -> None:
        self.recorded.append(list(turns))

    async def load_history(self, continuation_id: str, max_turns: int) -> list[Turn]:
        return []


async def _noop(_: str) -> None:
    return None


def call_context() -> CallContext:
    return CallContext("r-1", "s-1", "0" * 32, progress=_noop, stream_chunk=_noop)


@pytest.fixture
def make_chat_tool(fake: FakeUpstream, telemetry: Telemetry, make_registry):
    """The chat tool on the fake upstream: ``(tool, threads, archive)``, settings by alias."""

    def build(**overrides: Any) -> tuple[ChatTool, Any, RecordingArchive]:
        settings = settings_for(fake, **overrides)
        threads = create_thread_store(settings, telemetry.instruments)
        archive = RecordingArchive()
        slots = {key: Slots("provider", 4, 1.0) for key in ("kimi", "glm")}
        tool = ChatTool(make_registry(settings), slots, Conversations(
            threads, archive, max_turns=settings.max_conversation_turns,
            max_turn_chars=settings.max_turn_chars))
        return tool, threads, archive

    return build
