"""The real daemon through the real pipeline: `exai serve` (with `exai fake-llm` upstreams and a
real Redis) exporting to the built collector running collector-config/config.yaml.

Traces go over OTLP/HTTP and metrics and logs over OTLP/gRPC, so both protocols are proven against
the real collector by one daemon.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from app.client import DaemonClient
from tests.harness.collector import attrs
from tests.harness.exai_process import daemon_env, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import ManagedProcess, free_port, port_open, wait_until
from tests.harness.redis_server import redis_process

from .conftest import Stack
from .telemetry import unique_service

EXAI = str(Path(os.sys.executable).with_name("exai"))
TOKEN = "pipeline-live-test-token"  # test-only, loopback only
FAKE_KEY = "sk-pipeline-live-fake-key-000000"


@dataclass
class LiveDaemon:
    service: str
    url: str
    fake_llm: str
    proc: ManagedProcess

    async def client(self) -> DaemonClient:
        return await DaemonClient.connect(self.url, TOKEN)

    @property
    def upstream(self) -> FakeUpstreamControl:
        return FakeUpstreamControl(self.fake_llm)

    def fault(self, status: int, count: int) -> None:
        self.upstream.faults(status, count)

    def configure(self, **config: float) -> None:
        self.upstream.config(**config)


@pytest.fixture(scope="module")
def live(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    root = tmp_path_factory.mktemp("daemon-live")
    redis = redis_process(root / "redis").start()
    fake, llm_port = spawn_fake_llm(root)
    ws_port, health_port = free_port(), free_port()
    service = unique_service("exai-daemon-live")
    http_traces = f"{stack.collector.otlp_http}/v1/traces"
    env = daemon_env(
        llm_port, ws_port, health_port, token=TOKEN, key=FAKE_KEY,
        REDIS_URL=redis.url,  # type: ignore[attr-defined]
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http_traces,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT=stack.collector.otlp_grpc,
        OTEL_BSP_SCHEDULE_DELAY="200", OTEL_BLRP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        EXAI_PROVIDER_MAX_RETRIES="0", EXAI_CIRCUIT_FAILURE_THRESHOLD="3",
        EXAI_CIRCUIT_RESET_SECS="2", EXAI_RATE_LIMIT_PER_SEC="1000",
        EXAI_RATE_LIMIT_BURST="1000",
    )
    daemon = ManagedProcess(name="exai-serve", argv=[EXAI, "serve"], env=env, cwd=root,
                            log_path=root / "serve.log",
                            ready=lambda: port_open(health_port) and port_open(ws_port)).start()
    try:
        yield LiveDaemon(service, f"ws://127.0.0.1:{ws_port}", f"http://127.0.0.1:{llm_port}",
                         daemon)
    finally:
        daemon.stop()
        fake.stop()
        redis.stop()


def _trace_spans(stack: Stack, trace_id: str) -> list[dict]:
    return [s for s in stack.tempo.spans() if s["traceId"] == trace_id]


async def test_client_traceparent_reaches_tempo_as_one_trace_and_loki_has_its_logs(
        stack: Stack, live: LiveDaemon) -> None:
    trace_id = os.urandom(16).hex()
    client = await live.client()
    try:
        first = await client.call_tool("chat", {"prompt": "start a thread"})
        live.fault(500, 1)  # an error trace: tail sampling keeps every one
        reply = await client.call_tool(
            "chat",
            {"prompt": "continue it", "continuation_id": first["metadata"]["continuation_id"]},
            meta={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"})
    finally:
        await client.close()
    assert reply["trace_id"] == trace_id and reply["error"]["code"] == "PROVIDER_ERROR"

    def complete() -> bool:
        names = {s["name"] for s in _trace_spans(stack, trace_id)}
        return {"tools/call chat", "chat glm-4.5-flash", "LRANGE"} <= names and \
            any(n.startswith("POST") for n in names)
    wait_until(complete, timeout=60, what="the daemon's trace in the Tempo stand-in")
    spans = {s["name"]: s for s in _trace_spans(stack, trace_id)}
    server, genai = spans["tools/call chat"], spans["chat glm-4.5-flash"]
    http = next(s for name, s in spans.items() if name.startswith("POST"))
    assert genai["parentSpanId"] == server["spanId"]
    assert http["parentSpanId"] == genai["spanId"]
    assert spans["LRANGE"]["parentSpanId"] == server["spanId"]
    assert attrs(server["attributes"])["error.type"] == "500"

    def logged() -> list[dict]:
        return [r for r in stack.loki.log_records() if r.get("traceId") == trace_id]
    wait_until(lambda: bool(logged()), timeout=60,
               what="the daemon's log lines in the Loki stand-in")
    assert any("PROVIDER_ERROR" in str(r.get("body")) for r in logged())

    # Every call, a successful one too, leaves its record in Loki, sampled into Tempo or not.
    def call_record() -> list[dict]:
        return [r for r in stack.loki.log_records() if r.get("traceId") == first["trace_id"]
                and r["attrs"].get("exai.call.outcome") == "ok"]
    wait_until(lambda: bool(call_record()), timeout=60,
               what="the successful call's record in the Loki stand-in")
    record = call_record()[0]
    assert record["severityText"] == "INFO" and record["spanId"]
    assert record["attrs"]["gen_ai.tool.name"] == "chat"
    assert record["attrs"]["gen_ai.provider.name"] == "z_ai"
    assert record["attrs"]["gen_ai.usage.output_tokens"] > 0
    assert "start a thread" not in str(record)


async def test_span_metrics_count_every_daemon_call_while_tempo_keeps_every_error(
        stack: Stack, live: LiveDaemon) -> None:
    calls, failures = 30, 6
    client = await live.client()
    error_traces = []
    try:
        for i in range(calls):
            if i % 5 == 0:
                live.fault(503, 1)
            reply = await client.call_tool("chat", {"prompt": f"count me {i}", "model": "glm-4.5"})
            if not reply["ok"]:
                error_traces.append(reply["trace_id"])
    finally:
        await client.close()
    assert len(error_traces) == failures

    selector = (f'job="{live.service}", span_name="tools/call chat", '
                f'gen_ai_request_model="glm-4.5"')
    prom = stack.prometheus
    wait_until(lambda: prom.scalar(f"sum(traces_span_metrics_calls_total{{{selector}}})") == calls,
               timeout=60, what=f"{calls} calls in span metrics", interval=0.5)
    errors = prom.scalar(f'sum(traces_span_metrics_calls_total{{{selector}, '
                         f'status_code="STATUS_CODE_ERROR"}})')
    assert errors == failures
    wait_until(lambda: all(_trace_spans(stack, t) for t in error_traces), timeout=60,
               what="every error trace in the Tempo stand-in")


async def test_provider_outage_fires_the_circuit_alert_and_it_resolves(stack: Stack,
                                                                      live: LiveDaemon) -> None:
    started = time.time()

    def notified(status: str) -> bool:
        return any(received >= started and state == status for received, state, _ in
                   stack.webhook.alerts("ExaiProviderCircuitOpen",
                                        gen_ai_provider_name="moonshot_ai"))

    live.fault(500, 10_000)  # Kimi is down until the faults are cleared
    client = await live.client()
    try:
        # traffic keeps coming: the breaker opens, half-open probes fail, it opens again
        while not notified("firing"):
            assert time.time() - started < 120, "ExaiProviderCircuitOpen never fired"
            await client.call_tool("chat", {"prompt": "outage", "model": "kimi-latest"})
            await asyncio.sleep(0.5)
        fired_after = time.time() - started
        live.upstream.reset()
        await asyncio.sleep(2.5)  # past EXAI_CIRCUIT_RESET_SECS: the next call is the probe
        assert (await client.call_tool("chat", {"prompt": "back?", "model": "kimi-latest"}))["ok"]
    finally:
        await client.close()
    ended = time.time()
    wait_until(lambda: notified("resolved"), timeout=180, interval=0.5,
               what="ExaiProviderCircuitOpen resolved at the webhook")
    print(f"\nMEASURED daemon circuit alert: firing notification {fired_after:.1f}s after the "
          f"outage began (rule for: 30s); resolved {time.time() - ended:.1f}s after it ended")


async def test_collector_stopped_under_load_costs_clients_nothing(stack: Stack,
                                                                 live: LiveDaemon) -> None:
    daemon = psutil.Process(live.proc.process.pid)  # type: ignore[union-attr]
    client = await live.client()
    try:
        await asyncio.gather(*(client.call_tool("chat", {"prompt": f"warm {i}"})
                               for i in range(50)))
        rss_before = daemon.memory_info().rss
        stack.collector.proc.stop()
        try:
            replies = []
            for batch in range(6):
                replies += await asyncio.gather(*(
                    client.call_tool("chat", {"prompt": f"collector down {batch}-{i}"})
                    for i in range(50)))
            rss_during = daemon.memory_info().rss
        finally:
            stack.collector.proc.start()
        assert all(r["ok"] for r in replies), [r["error"] for r in replies if not r["ok"]][:3]
        assert rss_during - rss_before < 40 * 1024 * 1024, (rss_before, rss_during)

        # telemetry resumes: a call made now is counted by span metrics again
        marker = "glm-4.5-air"
        await client.call_tool("chat", {"prompt": "after", "model": marker})
    finally:
        await client.close()
    wait_until(lambda: (stack.prometheus.scalar(
        f'sum(traces_span_metrics_calls_total{{job="{live.service}", '
        f'gen_ai_request_model="{marker}", span_name="tools/call chat"}})') or 0) >= 1,
        timeout=90, interval=0.5, what="span metrics from the daemon after the collector returned")
