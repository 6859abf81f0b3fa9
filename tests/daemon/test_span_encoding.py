"""Spans encoded straight to bytes parse to exactly the message the SDK's encoder builds."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from otel import span_encoding
from otel.setup import build_resource
from otel.span_encoding import SpanEncoder

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
    assert _parsed(SpanEncoder().encode(spans)) == encode_spans(spans)


def test_several_resources_and_scopes_keep_the_sdks_grouping():
    spans = (_finished(Resource({"service.name": "a"}, "https://schema/1"))
             + _finished(Resource({"service.name": "b", "n": 3}), scope_version=None))
    encoder = SpanEncoder()
    assert _parsed(encoder.encode(spans)) == encode_spans(spans)
    # The second batch comes from the caches (attributes, resources, scopes): still the same.
    assert _parsed(encoder.encode(spans[::-1])) == encode_spans(spans[::-1])


def test_a_span_without_a_scope_or_attributes():
    bare = ReadableSpan(name="", context=SpanContext(1, 2, is_remote=False),
                        resource=Resource({}), start_time=1, end_time=2)
    assert _parsed(SpanEncoder().encode([bare])) == encode_spans([bare])


def test_an_attribute_that_cannot_be_encoded_is_dropped_with_a_log_as_the_sdk_does(caplog):
    span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                        resource=Resource({}), attributes={"ok": 1, "huge": 2**70},
                        start_time=1, end_time=2)
    with caplog.at_level(logging.ERROR):
        ours = _parsed(SpanEncoder().encode([span]))
    assert ours == encode_spans([span])
    assert [a.key for a in ours.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert "Failed to encode key huge" in caplog.text


def test_the_attribute_cache_stays_within_its_bound_and_right_after_clearing():
    encoder = SpanEncoder(cache_limit=8)
    resource = Resource({"service.name": "x"})
    for n in range(50):  # 50 distinct values: the cache fills and clears, never above 8
        span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                            resource=resource, attributes={"id": f"v{n}", "tokens": n},
                            start_time=1, end_time=2)
        assert _parsed(encoder.encode([span])) == encode_spans([span])
        assert len(encoder._attributes) <= 8


def test_equal_values_of_different_types_are_not_confused():
    encoder = SpanEncoder()
    resource = Resource({})
    for value in (1, True, 1.0):
        span = ReadableSpan(name="s", context=SpanContext(1, 2, is_remote=False),
                            resource=resource, attributes={"v": value}, start_time=1, end_time=2)
        assert _parsed(encoder.encode([span])) == encode_spans([span])


@pytest.fixture
def restore_encode_spans():
    original = trace_exporter.encode_spans
    yield
    trace_exporter.encode_spans = original


def test_install_routes_the_http_exporter_through_the_encoder_once(restore_encode_spans):
    span_encoding.install()
    installed = trace_exporter.encode_spans
    span_encoding.install()
    assert trace_exporter.encode_spans is installed
    spans = _finished(build_resource("1.0.0"))
    assert _parsed(installed(spans).SerializePartialToString()) == encode_spans(spans)
