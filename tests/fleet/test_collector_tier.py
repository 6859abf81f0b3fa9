"""The fleet's collector tier, live on loopback: agents routing to two authenticated gateways.

What each test proves, with the real configs (collector-config/{common,config,gateway,
gateway-tls,agent}.yaml) in the built collector:

- a gateway refuses OTLP without its bearer token, over HTTP and gRPC, and counts every refusal
  in its own server metrics; with the token unset it does not start at all;
- an agent sends every span of a trace to the same gateway, even when the spans arrive in
  separate requests, and both gateways get a share;
- span metrics computed by the two gateways carry their collector label, so the series never
  collide and their sum equals the spans sent;
- over TLS, an agent and a daemon (the SDK's standard OTEL_EXPORTER_OTLP_HEADERS and
  OTEL_EXPORTER_OTLP_CERTIFICATE) both deliver, and the token appears in no log.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from app.client import DaemonClient
from tests.harness.collector import (
    Collector,
    StandIn,
    agent_collector,
    main_collector,
    standin,
    validate,
)
from tests.harness.exai_process import TOKEN, spawn_daemon, spawn_fake_llm
from tests.harness.procs import LOOPBACK, wait_until
from tests.harness.prometheus import Prometheus, prometheus
from tests.pipeline.telemetry import unique_service

GATEWAY_TOKEN = "fleet-gateway-token-not-a-secret"
# Every trace kept, so a test can count spans in the Tempo stand-ins.
KEEP_ALL = {"EXAI_TRACE_SAMPLE_PERCENT": "100"}


@dataclass
class Tier:
    gateways: list[Collector]
    tempos: list[StandIn]  # tempos[i] is what gateways[i] stored
    agent: Collector
    prometheus: Prometheus


def _gateway(root: Path, name: str, tempo: StandIn, loki: StandIn, prom: Prometheus,
             role: str = "gateway", **extra: str) -> Collector:
    return main_collector(
        root / name, tempo_grpc=tempo.grpc_endpoint, loki_http=loki.loki_endpoint,
        remote_write_url=prom.remote_write_url, role=role,
        extra_env={"EXAI_OTELCOL_GATEWAY_TOKEN": GATEWAY_TOKEN, "EXAI_OTELCOL_INSTANCE_ID": name,
                   **KEEP_ALL, **extra})


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    root = tmp_path_factory.mktemp("tier")
    prom = prometheus(root / "prometheus")
    tempos = [standin(root / "tempo-1"), standin(root / "tempo-2")]
    loki = standin(root / "loki")
    started: list = [prom.proc, loki.proc, *(t.proc for t in tempos)]
    try:
        for proc in started:
            proc.start()
        gateways = [_gateway(root, f"gateway-{i + 1}", tempos[i], loki, prom) for i in range(2)]
        for gateway in gateways:
            gateway.proc.start()
            started.append(gateway.proc)
        agent = agent_collector(root / "agent", token=GATEWAY_TOKEN,
                                gateways=[f"{LOOPBACK}:{g.grpc_port}" for g in gateways])
        agent.proc.start()
        started.append(agent.proc)
        yield Tier(gateways, tempos, agent, prom)
    finally:
        for proc in reversed(started):
            proc.stop()


def _send_traces(exporter: SpanExporter, service: str, traces: int,
                 spans_per_trace: int) -> set[str]:
    """``traces`` traces of ``spans_per_trace`` spans, each span its own export request (so
    routing is decided per span, not per batch). Returns the trace ids."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("fleet-test")
    trace_ids = set()
    for _ in range(traces):
        with tracer.start_as_current_span("call") as root:
            trace_ids.add(format(root.get_span_context().trace_id, "032x"))
            for child in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"step-{child}"):
                    pass
    provider.shutdown()
    return trace_ids


def _spans_of(tempo: StandIn, service: str) -> list[dict]:
    return [s for s in tempo.spans() if s["resource"].get("service.name") == service]


class _Recording(SpanExporter):
    """Keeps every export result, so a test can assert that all were refused."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner, self.results = inner, []

    def export(self, spans: list[ReadableSpan]) -> SpanExportResult:  # type: ignore[override]
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_gateway_refuses_otlp_without_its_token_and_counts_every_refusal(tier: Tier) -> None:
    gateway = tier.gateways[0]
    refused_http = {"http_response_status_code": "401", "server_port": str(gateway.http_port)}
    refused_grpc = {"rpc_response_status_code": "UNAUTHENTICATED"}
    before_http = gateway.self_metric("http_server_request_duration_count", **refused_http)
    before_grpc = gateway.self_metric("rpc_server_call_duration_count", **refused_grpc)
    url = f"http://{LOOPBACK}:{gateway.http_port}/v1/traces"
    for headers in ({}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": GATEWAY_TOKEN}):  # right token, no scheme
        reply = httpx.post(url, content=b"{}", timeout=5,
                           headers={"Content-Type": "application/json", **headers})
        assert reply.status_code == 401, (headers, reply.status_code)
    service = unique_service("unauthenticated")
    exporters = [
        _Recording(GrpcSpans(endpoint=gateway.otlp_grpc, insecure=True, timeout=3)),
        _Recording(GrpcSpans(endpoint=gateway.otlp_grpc, insecure=True, timeout=3,
                             headers={"authorization": "Bearer wrong-token"})),
        _Recording(HttpSpans(endpoint=f"{gateway.otlp_http}/v1/traces", timeout=3)),
    ]
    for exporter in exporters:
        _send_traces(exporter, service, traces=1, spans_per_trace=1)
        assert exporter.results == [SpanExportResult.FAILURE]

    def counted() -> bool:
        return (gateway.self_metric("http_server_request_duration_count", **refused_http)
                - before_http >= 4
                and gateway.self_metric("rpc_server_call_duration_count", **refused_grpc)
                - before_grpc >= 2)

    wait_until(counted, 10, "refusals in the gateway's server metrics")
    # The right token is accepted on both transports, and only that traffic is stored.
    accepted = unique_service("authenticated")
    auth = {"authorization": f"Bearer {GATEWAY_TOKEN}"}
    sent = _send_traces(GrpcSpans(endpoint=gateway.otlp_grpc, insecure=True, headers=auth),
                        accepted, traces=1, spans_per_trace=1)
    sent |= _send_traces(HttpSpans(endpoint=f"{gateway.otlp_http}/v1/traces", headers=auth),
                         accepted, traces=1, spans_per_trace=1)
    wait_until(lambda: len(_spans_of(tier.tempos[0], accepted)) == 2, 20, "accepted spans")
    assert {s["traceId"] for s in _spans_of(tier.tempos[0], accepted)} == sent
    assert _spans_of(tier.tempos[0], service) == []


def test_gateway_without_a_token_refuses_to_start() -> None:
    """An unset token never means an open gateway."""
    done = validate("gateway", {"EXAI_OTELCOL_GATEWAY_TOKEN": ""})
    assert done.returncode != 0
    assert "no bearer token" in done.stdout + done.stderr


def test_agent_sends_every_span_of_a_trace_to_one_gateway(tier: Tier) -> None:
    service = unique_service("routing")
    traces, per_trace = 60, 4
    agent = GrpcSpans(endpoint=tier.agent.otlp_grpc, insecure=True)
    sent = _send_traces(agent, service, traces, per_trace)

    def stored() -> list[list[dict]]:
        return [_spans_of(tempo, service) for tempo in tier.tempos]

    wait_until(lambda: sum(map(len, stored())) >= traces * per_trace, 60, "all spans in Tempo")
    per_gateway = stored()
    print(f"\nspans per gateway: {[len(s) for s in per_gateway]} of {traces * per_trace}")
    assert sum(map(len, per_gateway)) == traces * per_trace  # none twice
    homes: dict[str, set[int]] = {}
    for index, spans in enumerate(per_gateway):
        for span in spans:
            homes.setdefault(span["traceId"], set()).add(index)
    assert set(homes) == sent
    split = {trace for trace, gateways in homes.items() if len(gateways) > 1}
    assert not split, f"traces split across gateways: {sorted(split)[:3]}"
    assert all(per_gateway), "one gateway got nothing"
    complete = Counter(span["traceId"] for spans in per_gateway for span in spans)
    assert set(complete.values()) == {per_trace}


def test_span_metrics_of_two_gateways_add_up_and_never_collide(tier: Tier) -> None:
    service = unique_service("span-metrics")
    traces, per_trace = 40, 3
    _send_traces(GrpcSpans(endpoint=tier.agent.otlp_grpc, insecure=True), service, traces,
                 per_trace)
    by_gateway = ("sum by (collector_instance_id) "
                  f'(traces_span_metrics_calls_total{{job="{service}"}})')

    def counts() -> dict[str, float]:
        return {r["metric"].get("collector_instance_id", ""): float(r["value"][1])
                for r in tier.prometheus.query(by_gateway)}

    wait_until(lambda: sum(counts().values()) == traces * per_trace, 60,
               "span-metric counts equal to the spans sent")
    assert set(counts()) == {"gateway-1", "gateway-2"}


# --- TLS --------------------------------------------------------------------------------------

def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) with its key; it is its own CA."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=exai-gateway", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory,
                tier: Tier) -> Iterator[tuple[Collector, StandIn, Path]]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(root)
    tempo, loki = standin(root / "tempo"), standin(root / "loki")
    tempo.proc.start()
    loki.proc.start()
    gateway = _gateway(root, "gateway-tls", tempo, loki, tier.prometheus, role="gateway-tls",
                       EXAI_OTELCOL_TLS_CERT_FILE=str(cert), EXAI_OTELCOL_TLS_KEY_FILE=str(key))
    try:
        gateway.proc.start()
        yield gateway, tempo, cert
    finally:
        for proc in (gateway.proc, loki.proc, tempo.proc):
            proc.stop()


def test_gateway_over_tls_refuses_plaintext(tls_gateway: tuple[Collector, StandIn, Path]) -> None:
    """The token never has to cross in clear text: plain HTTP gets Go's "HTTP request to an
    HTTPS server" (400), or a reset when Go closes before the client reads that answer; gRPC
    without TLS fails."""
    gateway, _, _ = tls_gateway
    try:
        reply = httpx.post(f"http://{LOOPBACK}:{gateway.http_port}/v1/traces", content=b"{}",
                           timeout=3, headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})
    except httpx.TransportError:
        pass  # refused all the same
    else:
        assert reply.status_code == 400
    plain = _Recording(GrpcSpans(endpoint=gateway.otlp_grpc, insecure=True, timeout=3,
                                 headers={"authorization": f"Bearer {GATEWAY_TOKEN}"}))
    _send_traces(plain, unique_service("plaintext"), traces=1, spans_per_trace=1)
    assert plain.results == [SpanExportResult.FAILURE]


def test_agent_delivers_to_a_tls_gateway(tmp_path: Path,
                                         tls_gateway: tuple[Collector, StandIn, Path]) -> None:
    gateway, tempo, cert = tls_gateway
    agent = agent_collector(tmp_path / "agent-tls", token=GATEWAY_TOKEN,
                            gateways=[f"localhost:{gateway.grpc_port}"],
                            extra_env={"EXAI_OTELCOL_GATEWAY_TLS_INSECURE": "false",
                                       "EXAI_OTELCOL_GATEWAY_CA_FILE": str(cert)})
    agent.proc.start()
    try:
        service = unique_service("agent-tls")
        sent = _send_traces(GrpcSpans(endpoint=agent.otlp_grpc, insecure=True), service, 3, 2)
        wait_until(lambda: len(_spans_of(tempo, service)) == 6, 30, "spans through TLS")
        assert {s["traceId"] for s in _spans_of(tempo, service)} == sent
    finally:
        agent.proc.stop()
    assert GATEWAY_TOKEN not in (tmp_path / "agent-tls" / "otelcol.log").read_text()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_daemon_sends_straight_to_a_tls_gateway_with_the_standard_variables(
        tmp_path: Path, tls_gateway: tuple[Collector, StandIn, Path], protocol: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, tempo, cert = tls_gateway
    # requests (under the SDK's http/protobuf exporter) lets these win over the exporter's own CA
    # file (psf/requests#3829); a machine that sets them must unset them for the daemon.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    service = unique_service("daemon-tls")
    port = gateway.grpc_port if protocol == "grpc" else gateway.http_port
    fake, upstream_port = spawn_fake_llm(tmp_path)
    daemon, url = spawn_daemon(
        tmp_path, upstream_port, OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"https://localhost:{port}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(cert),
        OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{GATEWAY_TOKEN}",
        OTEL_BSP_SCHEDULE_DELAY="200")

    async def call() -> str:
        client = await DaemonClient.connect(url, TOKEN)
        try:
            reply = await client.call_tool("chat", {"prompt": "over tls", "model": "glm-4.5"})
        finally:
            await client.close()
        return str(reply["trace_id"])

    try:
        trace_id = asyncio.run(call())
        wait_until(lambda: any(s["traceId"] == trace_id for s in _spans_of(tempo, service)),
                   30, "the daemon's trace in Tempo")
    finally:
        daemon.stop()
        fake.stop()
    assert GATEWAY_TOKEN not in (tmp_path / "serve.log").read_text()
