"""Spans and log records encoded straight to bytes parse to exactly the messages the SDK's
encoders build."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from otel import otlp_encoding
from otel.logs import SafeLoggingHandler
from otel.otlp_encoding import OtlpEncoder
from otel.setup import build_resource

REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1")]))


def _finished(resource: Resource, scope_version: str | None = "1.2.3") -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("exai", scope_version, schema_url="https://opentelemetry.io/s/1",
                                 attributes={"scope.attr": "s"})
    other = provider.get_tracer("redis-instrumentation")
    parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span("tools/call chat", context=parent, kind=SpanKind.SERVER,
                                      attributes={"mcp.method.name": "tools/call"}) as server:
        server.set_attributes({
            "text": "héllo ✓", "empty": "", "zero": 0, "negative": -5, "big": 2**62,
            "ratio": 0.25, "nan": float("nan"), "yes": True, "no": False, "ints": [1, 2, 3],
            "strs": ("a", "b"), "floats": [1.5], "bools": [True, False], "none_inside": ["x", None],
        })
        server.add_event("gen_ai.choice", {"index": 0, "finish": "stop"})
        server.add_event("bare")
        with tracer.start_as_current_span("chat kimi", kind=SpanKind.CLIENT,
                                          links=[Link(REMOTE, {"why": "retry"}), Link(REMOTE)]):
            pass
        with other.start_as_current_span("MULTI", kind=SpanKind.CLIENT) as redis_span:
            redis_span.set_status(Status(StatusCode.ERROR, "connection reset"))
        with tracer.start_as_current_span("internal") as internal:
            internal.set_status(Status(StatusCode.OK))
        tracer.start_span("producer", kind=SpanKind.PRODUCER).end()
        tracer.start_span("consumer", kind=SpanKind.CONSUMER).end()
    return list(exporter.get_finished_spans())


def _parsed(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def test_a_batch_parses_to_the_sdks_message():
    spans = _finished(build_resource("1.0.0"))
    assert _parsed(OtlpEncoder().spans(spans)) == encode_spans(spans)


def test_several_resources_and_scopes_keep_the_sdks_grouping():
    spans = (_finished(Resource({"service.name": "a"}, "https://schema/1"))
             + _finished(Resource({"service.name": "b", "n": 3}), scope_version=None))
    encoder = OtlpEncoder()
    assert _parsed(encoder.spans(spans)) == encode_spans(spans)
    # The second batch comes from the caches (attributes, resources, scopes): still the same.
    assert _parsed(encoder.spans(spans[::-1])) == encode_spans(spans[::-1])


def test_a_span_without_a_scope_or_attributes():
    bare = ReadableSpan(name="", context=SpanContext(1, 2, is_remote=False),
                        resource=Resource({}), start_time=1, end_time=2)
    assert _parsed(OtlpEncoder().spans([bare])) == encode_spans([bare])


def test_an_attribute_that_cannot_be_encoded_is_dropped_with_a_log_as_the_sdk_does(caplog):
    span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                        resource=Resource({}), attributes={"ok": 1, "huge": 2**70},
                        start_time=1, end_time=2)
    with caplog.at_level(logging.ERROR):
        ours = _parsed(OtlpEncoder().spans([span]))
    assert ours == encode_spans([span])
    assert [a.key for a in ours.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    ours_logged = [r.getMessage() for r in caplog.records if r.name == "otel.otlp_encoding"]
    assert len(ours_logged) == 1 and "Failed to encode key huge" in ours_logged[0]
    assert str(2**70) not in ours_logged[0]  # the SDK's message quotes the value; ours does not


def test_the_attribute_cache_stays_within_its_bound_and_right_after_clearing():
    encoder = OtlpEncoder(cache_limit=8)
    resource = Resource({"service.name": "x"})
    for n in range(50):  # 50 distinct values: the cache fills and clears, never above 8
        span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                            resource=resource, attributes={"id": f"v{n}", "tokens": n},
                            start_time=1, end_time=2)
        assert _parsed(encoder.spans([span])) == encode_spans([span])
        assert len(encoder._attributes) <= 8


def test_equal_values_of_different_types_are_not_confused():
    encoder = OtlpEncoder()
    resource = Resource({})
    for value in (1, True, 1.0):
        span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                            resource=resource, attributes={"v": value}, start_time=1, end_time=2)
        assert _parsed(encoder.spans([span])) == encode_spans([span])


def _logged(resource: Resource) -> list:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = SafeLoggingHandler(provider)
    logger = logging.getLogger("exai.test.otlp_encoding")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    tracer = TracerProvider().get_tracer("t")
    try:
        logger.info("call done", extra={"gen_ai.provider.name": "moonshot", "tokens": 12,
                                        "ok": True, "ratio": 0.5, "ids": ["a", "b"]})
        with tracer.start_as_current_span("inside"):
            logger.warning("inside a span: %s", "trace ids set")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        provider.get_logger("other", "2.0").emit(body={"structured": [1, 2]}, event_name="ev")
        provider.get_logger("other", "2.0").emit(body=None)
    finally:
        logger.removeHandler(handler)
    return list(exporter.get_finished_logs())


def test_log_records_parse_to_the_sdks_message():
    records = _logged(build_resource("1.0.0")) + _logged(Resource({"service.name": "b"}))
    encoder = OtlpEncoder()
    ours = ExportLogsServiceRequest.FromString(encoder.logs(records))
    assert ours == encode_logs(records)
    assert len(ours.resource_logs) == 2
    logged = [r for scope in ours.resource_logs[0].scope_logs for r in scope.log_records]
    assert len(logged) == 5 and sum(1 for r in logged if r.trace_id) == 1
    assert any(a.key == "exception.type" for r in logged for a in r.attributes)
    again = ExportLogsServiceRequest.FromString(encoder.logs(records))  # from the caches
    assert again == encode_logs(records)


@pytest.fixture
def restore_encoders():
    originals = trace_exporter.encode_spans, _log_exporter.encode_logs
    yield
    trace_exporter.encode_spans, _log_exporter.encode_logs = originals


def test_install_routes_the_http_exporters_through_the_encoder_once(restore_encoders):
    otlp_encoding.install()
    spans_installed, logs_installed = trace_exporter.encode_spans, _log_exporter.encode_logs
    otlp_encoding.install()
    assert trace_exporter.encode_spans is spans_installed
    assert _log_exporter.encode_logs is logs_installed
    spans = _finished(build_resource("1.0.0"))
    assert _parsed(spans_installed(spans).SerializePartialToString()) == encode_spans(spans)
    records = _logged(build_resource("1.0.0"))
    assert ExportLogsServiceRequest.FromString(
        logs_installed(records).SerializeToString()) == encode_logs(records)
