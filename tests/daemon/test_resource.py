"""The daemon's resource hashes once and encodes exactly as the SDK's own."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel.setup import HashedOnceResource, build_resource


def _spans(resource: Resource):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("parent", attributes={"a": 1}):
        provider.get_tracer("t").start_span("child").end()
    return exporter.get_finished_spans()


def test_resource_variables_still_win_and_the_hash_is_the_sdks(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,team=obs")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    resource = build_resource("9.9.9")
    assert isinstance(resource, HashedOnceResource)
    attributes = resource.attributes
    assert attributes["service.name"] == "renamed" and attributes["team"] == "obs"
    assert attributes["service.version"] == "9.9.9" and attributes["service.instance.id"]
    plain = Resource(attributes, resource.schema_url)
    assert hash(resource) == hash(plain) == hash(resource)  # second call: the cached value
    assert resource == plain


def test_spans_encode_to_the_same_bytes_as_with_a_plain_resource():
    resource = build_resource("1.0.0")
    plain = Resource(resource.attributes, resource.schema_url)
    ours, theirs = _spans(resource), _spans(plain)

    def encoded(spans) -> bytes:
        message = encode_spans(spans)
        for resource_spans in message.resource_spans:  # ids and times differ run to run
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    for field in ("trace_id", "span_id", "parent_span_id",
                                  "start_time_unix_nano", "end_time_unix_nano"):
                        span.ClearField(field)
        return message.SerializeToString(deterministic=True)

    assert encoded(ours) == encoded(theirs)
    assert len(encode_spans(ours).resource_spans) == 1  # one group for every span of a resource
