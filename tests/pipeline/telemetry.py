"""Synthetic OTLP traffic for the pipeline tests, sent with the real Python SDK and exporters.

Each test uses its own service.name, so tests sharing one collector and one Prometheus never see
each other's data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def unique_service(prefix: str) -> str:
    """A service.name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class SentSpan:
    trace_id: str  # 32 hex digits, as the OTLP/JSON files and Prometheus exemplars write it
    error: bool
    slow: bool


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service, "service.instance.id": f"{service}-1"})


def send_tool_calls(
    grpc_endpoint: str, service: str, *, n: int, errors: set[int], slow: set[int] = frozenset(),
    slow_seconds: float = 1.5, extra_attributes: Mapping[str, Any] | None = None,
) -> list[SentSpan]:
    """``n`` root SERVER spans ``tools/call chat`` (one trace each); indexes in ``errors`` get
    status ERROR, those in ``slow`` last ``slow_seconds`` (timestamps set explicitly)."""
    provider = TracerProvider(resource=_resource(service))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True), max_export_batch_size=256,
        schedule_delay_millis=200,
    ))
    tracer = provider.get_tracer("exai.pipeline-test")
    sent: list[SentSpan] = []
    for i in range(n):
        end = time.time_ns()
        duration_ns = int((slow_seconds if i in slow else 0.004) * 1e9)
        attributes = {
            "mcp.method.name": "tools/call", "gen_ai.tool.name": "chat",
            "gen_ai.operation.name": "execute_tool", "jsonrpc.request.id": str(i),
            "network.transport": "tcp", **(extra_attributes or {}),
        }
        if i in errors:
            attributes["error.type"] = "provider_error"
        span = tracer.start_span("tools/call chat", kind=SpanKind.SERVER,
                                 start_time=end - duration_ns, attributes=attributes)
        if i in errors:
            span.set_status(Status(StatusCode.ERROR, "upstream failed"))
        trace_id = format(span.get_span_context().trace_id, "032x")
        span.end(end_time=end)
        sent.append(SentSpan(trace_id, i in errors, i in slow))
    provider.force_flush(30_000)
    provider.shutdown()
    return sent


def send_span(grpc_endpoint: str, service: str, name: str, attributes: Mapping[str, Any], *,
              kind: SpanKind = SpanKind.CLIENT, status: Status | None = None,
              events: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str:
    """One span with the given attributes and events; returns its trace id (hex)."""
    provider = TracerProvider(resource=_resource(service))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True), schedule_delay_millis=100,
    ))
    span = provider.get_tracer("exai.pipeline-test").start_span(name, kind=kind,
                                                                 attributes=dict(attributes))
    for event_name, event_attributes in events:
        span.add_event(event_name, dict(event_attributes))
    if status is not None:
        span.set_status(status)
    trace_id = format(span.get_span_context().trace_id, "032x")
    span.end()
    provider.force_flush(30_000)
    provider.shutdown()
    return trace_id


def send_logs(http_endpoint: str, service: str,
              records: Sequence[tuple[Any, Mapping[str, Any], str | None]]) -> None:
    """Log records (body, attributes, event_name) over OTLP/HTTP to ``http_endpoint``/v1/logs."""
    provider = LoggerProvider(resource=_resource(service))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{http_endpoint}/v1/logs"), schedule_delay_millis=100,
    ))
    logger = provider.get_logger("exai.pipeline-test")
    for body, attributes, event_name in records:
        logger.emit(body=body, attributes=dict(attributes), event_name=event_name,
                    severity_number=SeverityNumber.INFO, severity_text="INFO",
                    timestamp=time.time_ns())
    provider.force_flush(30_000)
    provider.shutdown()


class GaugePusher:
    """A MeterProvider exporting every ``interval_ms`` over OTLP gRPC, with one synchronous
    gauge."""

    def __init__(self, grpc_endpoint: str, service: str, name: str, interval_ms: int = 500) -> None:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=grpc_endpoint, insecure=True),
            export_interval_millis=interval_ms,
        )
        self.provider = MeterProvider(resource=_resource(service), metric_readers=[reader])
        self.gauge = self.provider.get_meter("exai.pipeline-test").create_gauge(
            name, description="circuit state: 0 closed, 1 half_open, 2 open")

    def set(self, value: float, attributes: Mapping[str, Any]) -> None:
        self.gauge.set(value, dict(attributes))

    def shutdown(self) -> None:
        self.provider.shutdown()
