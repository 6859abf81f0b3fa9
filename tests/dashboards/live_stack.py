"""The live test stack the dashboards are proven against, started from the shared harness.

Everything is a real process on loopback: the project's collector build running
collector-config/config.yaml, Debian's Prometheus with backends/prometheus (rules included),
Tempo/Loki stand-ins, redis-server, PostgreSQL behind the PostgREST-compatible test server (the
Supabase archive), ``exai fake-llm`` and ``exai serve``. ``drive_load`` then produces the traffic
every panel needs: successes on both providers, streaming (time to first chunk), an unpriced model,
rejections, upstream failures that open a circuit, and a Supabase outage that builds a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.collector import Collector, StandIn, main_collector, standin
from tests.harness.exai_process import daemon_env, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, port_open
from tests.harness.prometheus import Prometheus, prepare_config
from tests.harness.redis_server import redis_process

EXAI = shutil.which("exai") or str(Path(sys.executable).with_name("exai"))
TOKEN = "dashboards-live-test-token"  # test-only, loopback only
FAKE_KEY = "test-only-fake-llm-key"
FAKE_SERVICE_ROLE_KEY = "test-only-fake-service-role-key"
KIMI_MODEL = "kimi-k2-0905-preview"
GLM_MODEL = "glm-4.5-flash"
UNPRICED_MODEL = "glm-not-in-the-price-table"


@dataclass
class LiveStack:
    """Handles on the running stack that the tests query."""

    prometheus: Prometheus
    collector: Collector
    backends: StandIn
    fake_llm_url: str
    ws_url: str


class _LoopThread:
    """An asyncio loop on its own thread, for the in-process PostgREST test server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 30):  # noqa: ANN001, ANN201 - any coroutine
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def _supabase(workdir: Path) -> Iterator[object]:
    """PostgreSQL with the migrations, behind the PostgREST test server: the daemon's Supabase."""
    from tests.harness.postgres import PostgresCluster, apply_migrations
    from tests.harness.postgrest import PostgrestTestServer

    cluster = PostgresCluster().start()
    loop = _LoopThread()
    server = None
    try:
        dsn = cluster.create_database("exai_dashboards")
        apply_migrations(dsn)
        server = PostgrestTestServer(dsn, FAKE_SERVICE_ROLE_KEY)
        loop.run(server.start())
        yield server
    finally:
        if server is not None:
            loop.run(server.aclose())
        loop.close()
        cluster.destroy()


def _daemon_env(collector: Collector, fake_port: int, redis_url: str, supabase_url: str,
                ws_port: int, health_port: int) -> dict[str, str]:
    return daemon_env(
        fake_port, ws_port, health_port, token=TOKEN, key=FAKE_KEY,
        HEALTH_CHECK_HOST=LOOPBACK, REDIS_URL=redis_url,
        SUPABASE_URL=supabase_url, SUPABASE_SERVICE_ROLE_KEY=FAKE_SERVICE_ROLE_KEY,
        # Small limits so a burst is rejected (rejection panels), quick retries and circuit.
        EXAI_WS_SESSION_MAX_INFLIGHT="4", EXAI_SLOT_WAIT_SECS="0.05",
        EXAI_RATE_LIMIT_PER_SEC="10000", EXAI_RATE_LIMIT_BURST="10000",
        EXAI_PROVIDER_MAX_RETRIES="1", EXAI_PROVIDER_RETRY_BASE_SECS="0.01",
        EXAI_PROVIDER_RETRY_MAX_SECS="0.05", EXAI_CIRCUIT_FAILURE_THRESHOLD="3",
        EXAI_CIRCUIT_RESET_SECS="600",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_grpc, OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_SEMCONV_STABILITY_OPT_IN="http",
        OTEL_BSP_SCHEDULE_DELAY="200", OTEL_BLRP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
    )


@contextlib.contextmanager
def live_stack(workdir: Path) -> Iterator[LiveStack]:
    """Start everything (order: backends, collector, Prometheus, services, daemon); stop it all."""
    started: list[ManagedProcess] = []

    def start(proc: ManagedProcess) -> ManagedProcess:
        proc.start()
        started.append(proc)
        return proc

    try:
        with _supabase(workdir / "supabase") as supabase:
            backends = standin(workdir / "backends")
            start(backends.proc)
            prom_port = free_port()
            collector = main_collector(
                workdir / "collector", tempo_grpc=backends.grpc_endpoint,
                loki_http=backends.loki_endpoint,
                remote_write_url=f"http://{LOOPBACK}:{prom_port}/api/v1/write")
            config = prepare_config(
                workdir / "prometheus" / "config",
                collector_metrics=f"{LOOPBACK}:{collector.telemetry_port}", alertmanager=None,
                fast=True)
            prometheus = Prometheus(workdir / "prometheus", prom_port, config)
            start(prometheus.proc)
            start(collector.proc)
            redis = start(redis_process(workdir / "redis"))

            fake, fake_port = spawn_fake_llm(workdir, "--latency-ms", "20", "--ttft-ms", "30")
            started.append(fake)
            ws_port, health_port = free_port(), free_port()
            env = _daemon_env(collector, fake_port, redis.url,  # type: ignore[attr-defined]
                              supabase.url, ws_port, health_port)  # type: ignore[attr-defined]
            start(ManagedProcess(name="exai-serve", argv=[EXAI, "serve"], env=env, cwd=workdir,
                                 log_path=workdir / "serve.log",
                                 ready=lambda: port_open(health_port)))
            stack = LiveStack(prometheus, collector, backends,
                              f"http://{LOOPBACK}:{fake_port}", f"ws://{LOOPBACK}:{ws_port}")
            stack.supabase = supabase  # type: ignore[attr-defined]
            stack.redis = redis  # type: ignore[attr-defined]
            yield stack
    finally:
        for proc in reversed(started):
            proc.stop()


# --- traffic ------------------------------------------------------------------------------------

async def _calls(url: str, calls: int, concurrency: int, **arguments: object) -> None:
    from app.loadgen import LoadPlan, run_load

    # One session and no retries: 12 callers are over its in-flight limit, and the refusals stand.
    await run_load(url, TOKEN, LoadPlan(
        calls=calls, concurrency=concurrency, sessions=1, retry=False,
        models=(arguments.get("model"),),  # type: ignore[arg-type]
        stream_share=1.0 if arguments.get("stream") else 0.0))


async def _other_tools(url: str) -> None:
    """The non-chat tools, and an unknown tool (an error of its own kind)."""
    from app.client import DaemonClient

    client = await DaemonClient.connect(url, TOKEN)
    try:
        for tool in ("status", "version", "listmodels"):
            await client.call_tool(tool, {})
        await client.call_tool("nonexistent_tool", {})
    finally:
        await client.close()


def drive_load(stack: LiveStack) -> None:
    """Successes, streams, unpriced calls, rejections, upstream failures and a Supabase outage."""
    url = stack.ws_url
    asyncio.run(_calls(url, 60, 2, model=GLM_MODEL))
    asyncio.run(_calls(url, 40, 2, model=KIMI_MODEL, stream=True))
    asyncio.run(_calls(url, 20, 2, model=GLM_MODEL, stream=True))
    asyncio.run(_calls(url, 10, 2, model=UNPRICED_MODEL))
    asyncio.run(_calls(url, 40, 12, model=GLM_MODEL))  # over the session's in-flight limit
    asyncio.run(_other_tools(url))
    # Supabase answers 503 for a while: delivery failures and an outbox backlog.
    supabase = stack.supabase  # type: ignore[attr-defined]
    supabase.fail_status = 503
    asyncio.run(_calls(url, 10, 2, model=GLM_MODEL))
    time.sleep(3)
    supabase.fail_status = None
    # Redis goes away for a moment: operation errors and the in-memory fallback, then recovery.
    redis: ManagedProcess = stack.redis  # type: ignore[attr-defined]
    redis.stop()
    asyncio.run(_calls(url, 10, 2, model=GLM_MODEL))
    redis.start()
    asyncio.run(_calls(url, 10, 2, model=GLM_MODEL))
    # Kimi's upstream fails: errors by type, then the circuit opens (PROVIDER_UNAVAILABLE).
    FakeUpstreamControl(stack.fake_llm_url).faults(500, 40)
    asyncio.run(_calls(url, 20, 2, model=KIMI_MODEL))


def trickle(stack: LiveStack) -> None:
    """A few more calls, so rates stay non-zero while the test waits for the pipeline."""
    asyncio.run(_calls(stack.ws_url, 4, 2, model=GLM_MODEL, stream=True))
    asyncio.run(_calls(stack.ws_url, 2, 1, model=KIMI_MODEL))
