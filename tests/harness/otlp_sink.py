"""A tiny OTLP/HTTP receiver on loopback, so tests can assert the spans other processes exported.

``/v1/traces`` and ``/v1/metrics`` (histogram points only) are decoded; ``/v1/logs`` is accepted
and dropped.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .loopback_http import LoopbackHTTPServer

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


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[SinkSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    return [SinkSpan(service=str(_attributes(group.resource.attributes).get("service.name", "")),
                     name=span.name, kind=KINDS.get(span.kind, str(span.kind)),
                     trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                     parent_id=span.parent_span_id.hex(),
                     status={0: "UNSET", 1: "OK", 2: "ERROR"}.get(span.status.code, "?"),
                     duration_secs=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                     attributes=_attributes(span.attributes))
            for group in request.resource_spans
            for scope in group.scope_spans
            for span in scope.spans]


def decode_metrics(body: bytes) -> list[SinkPoint]:
    """The histogram points of an export request (other kinds are not needed yet)."""
    request = ExportMetricsServiceRequest.FromString(body)
    return [SinkPoint(service=str(_attributes(group.resource.attributes).get("service.name", "")),
                      metric=metric.name, count=point.count,
                      attributes=_attributes(point.attributes))
            for group in request.resource_metrics
            for scope in group.scope_metrics
            for metric in scope.metrics if metric.WhichOneof("data") == "histogram"
            for point in metric.histogram.data_points]


class OtlpSink(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self._spans: list[SinkSpan] = []
        self._points: list[SinkPoint] = []

    def on_post(self, path: str, headers: Message, body: bytes) -> tuple[bytes, str]:
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        reply = b""
        if path == "/v1/traces":
            spans = decode(body)
            with self._lock:
                self._spans.extend(spans)
            reply = ExportTraceServiceResponse().SerializeToString()
        elif path == "/v1/metrics":
            points = decode_metrics(body)
            with self._lock:
                self._points.extend(points)
        return reply, "application/x-protobuf"

    @property
    def endpoint(self) -> str:
        return self.base_url

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
