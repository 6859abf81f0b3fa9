"""The provider transport's own CLIENT span is the httpx instrumentation's span.

The same requests go to a real loopback server through two provider clients: one whose transport
makes the span (``otel.http_client``, what the daemon runs), one instrumented by
``opentelemetry-instrumentation-httpx`` (what a zero-code agent gets). Their spans must agree in
name, kind, attributes, status, events, instrumentation scope and parent, in each
``OTEL_SEMCONV_STABILITY_OPT_IN`` mode, and the server must see the span's trace context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry import metrics
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.providers.transport import ProviderTransport, make_client
from otel import http_client
from otel.http_client import HttpClientSpans
from tests.harness.procs import free_port

MODES = {"default": _StabilityMode.DEFAULT, "http": _StabilityMode.HTTP,
         "http/dup": _StabilityMode.HTTP_DUP}


@pytest.fixture(params=list(MODES))
def semconv_mode(request: pytest.FixtureRequest) -> Iterator[_StabilityMode]:
    """The HTTP opt-in mode, as ``OTEL_SEMCONV_STABILITY_OPT_IN`` would have set it."""
    stability = _OpenTelemetrySemanticConventionStability
    stability._initialize()
    saved = dict(stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING)
    stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING[_OpenTelemetryStabilitySignalType.HTTP] = \
        MODES[request.param]
    yield MODES[request.param]
    stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = saved


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """Answers /ok with 200, /fail with 503, /missing with 404; echoes the traceparent."""
    async def answer(request: web.Request) -> web.Response:
        status = {"/ok": 200, "/fail": 503, "/missing": 404}[request.path]
        return web.json_response({"traceparent": request.headers.get("traceparent")},
                                 status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


class _Side:
    """One client and the spans of its own tracer provider."""

    def __init__(self, ours: bool) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        if ours:
            self.client = make_client(5.0, HttpClientSpans(self.provider))
        else:
            self.client = httpx.AsyncClient(transport=ProviderTransport(), timeout=5.0)
            HTTPXClientInstrumentor.instrument_client(
                self.client, tracer_provider=self.provider,
                meter_provider=metrics.NoOpMeterProvider())
        self.tracer = self.provider.get_tracer("test")

    async def request(self, method: str, url: str) -> tuple[httpx.Response | None, str | None]:
        with self.tracer.start_as_current_span("parent"):
            try:
                response = await self.client.request(method, url)
            except httpx.HTTPError as exc:
                return None, type(exc).__name__
        return response, None

    def client_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name != "parent"]


def _shape(span: ReadableSpan) -> dict[str, Any]:
    """What must agree: all but ids, times and the exception's stack trace."""
    scope = span.instrumentation_scope
    assert scope is not None and span.parent is not None
    return {
        "name": span.name, "kind": span.kind, "attributes": dict(span.attributes or {}),
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, {k: v for k, v in (e.attributes or {}).items()
                             if k != "exception.stacktrace"}) for e in span.events],
        "scope": (scope.name, scope.version, scope.schema_url),
        "has_parent": span.parent.span_id != 0,
    }


@pytest.fixture
async def sides() -> AsyncIterator[tuple[_Side, _Side]]:
    made = (_Side(ours=True), _Side(ours=False))
    yield made
    for side in made:
        await side.client.aclose()


@pytest.mark.parametrize(("method", "path"), [("POST", "/ok"), ("GET", "/fail"),
                                              ("POST", "/missing"), ("QUERY", "/ok")])
async def test_the_span_is_the_instrumentations(
        semconv_mode: _StabilityMode, server: str, sides: tuple[_Side, _Side],
        method: str, path: str) -> None:
    ours, theirs = sides
    for side in sides:
        response, _ = await side.request(method, f"{server}{path}")
        assert response is not None
        [span] = side.client_spans()
        assert response.json()["traceparent"] == \
            (f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-"
             f"{span.context.trace_flags:02x}")
    [mine], [reference] = ours.client_spans(), theirs.client_spans()
    assert _shape(mine) == _shape(reference)
    assert mine.kind is SpanKind.CLIENT and mine.attributes


async def test_a_failed_connection_gives_the_same_error_span(
        semconv_mode: _StabilityMode, sides: tuple[_Side, _Side]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/ok"
    errors = [(await side.request("POST", closed))[1] for side in sides]
    assert errors == ["ConnectError", "ConnectError"]
    [mine], [reference] = (side.client_spans() for side in sides)
    assert _shape(mine) == _shape(reference)
    assert [event.name for event in mine.events] == ["exception"]


async def test_credentials_and_signatures_in_the_url_are_redacted_alike(
        server: str, sides: tuple[_Side, _Side]) -> None:
    url = server.replace("http://", "http://user:hunter2@") + "/ok?sig=SECRET&model=x"
    for side in sides:
        await side.request("POST", url)
    [mine], [reference] = (side.client_spans() for side in sides)
    assert _shape(mine) == _shape(reference)
    text = str(dict(mine.attributes or {}))
    assert "hunter2" not in text and "SECRET" not in text and "model=x" in text


def test_settings_only_the_instrumentation_honours_leave_the_spans_to_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_HTTPX_EXCLUDED_URLS", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS", raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
                       raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", raising=False)
    assert http_client.instrumentation_only_settings() == []
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "x-request-id")
    monkeypatch.setenv("OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "health")
    assert http_client.instrumentation_only_settings() == [
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
        "OTEL_PYTHON_HTTPX_EXCLUDED_URLS"]


async def test_without_spans_the_transport_is_httpxs_for_the_instrumentation_to_wrap(
        server: str) -> None:
    side = _Side(ours=False)
    try:
        await side.request("POST", f"{server}/ok")
        [span] = side.client_spans()
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == http_client.HTTPX_INSTRUMENTATION_SCOPE
    finally:
        await side.client.aclose()
