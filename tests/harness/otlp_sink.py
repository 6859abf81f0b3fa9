"""A tiny OTLP/HTTP receiver on loopback, so tests can assert the spans other processes exported.

It runs the stdlib's threading HTTP server, not the test's event loop: a test that blocks its loop
(starting a process, say) must not stall the exporters of the processes it is watching.
``/v1/traces`` and ``/v1/metrics`` (histogram points only) are decoded; ``/v1/logs`` is accepted
and dropped.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class SinkSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    status: str
    duration_secs: float
    attributes: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class SinkPoint:
    """One histogram data point: which service, which metric, its attributes and count."""

    service: str
    metric: str
    count: int
    attributes: dict[str, Any] = field(hash=False)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[SinkSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[SinkSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(SinkSpan(
                    service=str(resource.get("service.name", "")), name=span.name,
                    kind=KINDS.get(span.kind, str(span.kind)), trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
                    status={0: "UNSET", 1: "OK", 2: "ERROR"}.get(span.status.code, "?"),
                    duration_secs=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                    attributes={a.key: _value(a.value) for a in span.attributes}))
    return spans


def decode_metrics(body: bytes) -> list[SinkPoint]:
    request = ExportMetricsServiceRequest.FromString(body)
    points: list[SinkPoint] = []
    for resource_metrics in request.resource_metrics:
        resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.WhichOneof("data") != "histogram":
                    continue
                for point in metric.histogram.data_points:
                    points.append(SinkPoint(
                        service=str(resource.get("service.name", "")), metric=metric.name,
                        count=point.count,
                        attributes={a.key: _value(a.value) for a in point.attributes}))
    return points


class OtlpSink:
    def __init__(self) -> None:
        self._spans: list[SinkSpan] = []
        self._points: list[SinkPoint] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    found = decode(body)
                    with sink._lock:
                        sink._spans.extend(found)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    points = decode_metrics(body)
                    with sink._lock:
                        sink._points.extend(points)
                    reply = b""
                else:
                    reply = b""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OtlpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans(self, trace_id: str | None = None) -> list[SinkSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def points(self, metric: str, service: str) -> list[SinkPoint]:
        with self._lock:
            return [p for p in self._points if p.metric == metric and p.service == service]

    async def wait_for(self, trace_id: str, check, timeout: float = 15.0) -> list[SinkSpan]:
        """The trace's spans once ``check(spans)`` holds; the spans so far in the failure."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(trace_id)
            if check(spans):
                return spans
            if time.monotonic() > deadline:
                listing = "\n".join(f"  {s.service} {s.kind} {s.name}" for s in spans)
                raise AssertionError(f"trace {trace_id} incomplete after {timeout}s:\n{listing}")
            await asyncio.sleep(0.05)
