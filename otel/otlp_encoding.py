"""OTLP/protobuf encoding of finished spans and log records straight to bytes.

The SDK's encoders (``encode_spans``, ``encode_logs`` of opentelemetry-exporter-otlp-proto-common)
build a protobuf message per item, per attribute and per value in Python, then serialise the
tree: about 290 k instructions per span of the daemon's, most of them on attributes whose key and
value are the same in every call (provider, model, operation, server address). This module writes
the same wire format directly and keeps the encoded bytes of each scalar attribute, resource and
scope in bounded caches, so a repeated attribute costs one dict look-up.

The result parses to a message equal to the SDK's (``tests/daemon/test_otlp_encoding.py`` checks
it on every field the SDK sets). Only the OTLP/HTTP exporters use it (:func:`install`): their
export methods ask their module's encoder for an object with ``SerializeToString`` or
``SerializePartialToString``, which is all :class:`EncodedRequest` provides.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind

_log = logging.getLogger(__name__)

# Distinct (key, type, value) attributes kept encoded; the cache is emptied when it is full, so
# high-cardinality values (ids, token counts) cost memory once per 4096, never without bound.
CACHE_LIMIT = 4096

_SMALL_VARINTS = [bytes([n]) for n in range(0x80)]
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

# SpanFlags: the context's is-remote bit is known (0x100), and is set (0x200).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
# Span.kind (field 6): the SDK's kinds count from 0, OTLP's from 1 (0 is "unspecified").
_KINDS = {kind: b"\x30" + bytes([kind.value + 1]) for kind in SpanKind}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _sized(payload: bytes) -> bytes:
    """A length-delimited payload: its length as a varint, then the payload."""
    return _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue``, as the SDK's ``_encode_value`` chooses the field."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return b"\x0a" + _sized(value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError("an integer outside int64")  # not the value: it may be content
        return b"\x18" + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return b"\x3a" + _sized(value)
    if isinstance(value, Sequence):
        items = b"".join(b"\x0a" + _sized(_any_value(item)) for item in value)
        return b"\x2a" + _sized(items)
    if isinstance(value, Mapping):
        pairs = b"".join(b"\x0a" + _sized(_key_value(str(k), v)) for k, v in value.items())
        return b"\x32" + _sized(pairs)
    raise TypeError(f"a value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return b"\x0a" + _sized(key.encode()) + b"\x12" + _sized(_any_value(value))


class OtlpEncoder:
    """Encodes batches of spans or log records; holds the bounded caches of encoded attributes,
    resources and scopes (one encoder per exporter thread)."""

    def __init__(self, cache_limit: int = CACHE_LIMIT) -> None:
        self._limit = cache_limit
        self._attributes: dict[tuple[str, type, Any], bytes] = {}
        self._resources: dict[Resource, bytes] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}

    def spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        """An ``ExportTraceServiceRequest``, grouped by resource then scope as the SDK does."""
        return self._grouped(spans, self._span)

    def logs(self, records: Sequence[ReadableLogRecord]) -> bytes:
        """An ``ExportLogsServiceRequest``, grouped by resource then scope as the SDK does."""
        return self._grouped(records, self._log_record)

    def _grouped(self, items: Sequence[Any], encode_item: Callable[[Any], bytes]) -> bytes:
        """Resource{Spans,Logs} > Scope{Spans,Logs} > items: both requests number their fields
        alike (1 resource or scope, 2 the items, 3 schema_url)."""
        grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        for item in items:
            by_scope = grouped.setdefault(item.resource, {})
            by_scope.setdefault(item.instrumentation_scope or None, []).append(encode_item(item))
        request = []
        for resource, by_scope in grouped.items():
            body = [b"\x0a", self._resource(resource)]
            for scope, encoded in by_scope.items():
                scoped = self._scope(scope) + b"".join(b"\x12" + item for item in encoded)
                if scope is not None and scope.schema_url:
                    scoped += b"\x1a" + _sized(scope.schema_url.encode())
                body += (b"\x12", _sized(scoped))
            if resource.schema_url:
                body += (b"\x1a", _sized(resource.schema_url.encode()))
            request.append(b"\x0a" + _sized(b"".join(body)))
        return b"".join(request)

    def _log_record(self, readable: ReadableLogRecord) -> bytes:
        """One ``LogRecord`` message, length-prefixed."""
        record = readable.log_record
        parts: list[bytes] = []
        if record.timestamp:
            parts += (b"\x09", _FIXED64.pack(record.timestamp))
        severity = getattr(record.severity_number, "value", None)
        if severity:
            parts += (b"\x10", _varint(severity))
        if record.severity_text:
            parts += (b"\x1a", _sized(record.severity_text.encode()))
        parts += (b"\x2a", _sized(_any_value(record.body)))
        if record.attributes:
            parts.append(self._attributes_field(b"\x32", record.attributes))
        if readable.dropped_attributes:
            parts += (b"\x38", _varint(readable.dropped_attributes))
        if record.trace_flags:
            parts += (b"\x45", _FIXED32.pack(int(record.trace_flags)))
        if record.trace_id:
            parts += (b"\x4a\x10", record.trace_id.to_bytes(16, "big"))
        if record.span_id:
            parts += (b"\x52\x08", record.span_id.to_bytes(8, "big"))
        if record.observed_timestamp:
            parts += (b"\x59", _FIXED64.pack(record.observed_timestamp))
        if record.event_name:
            parts += (b"\x62", _sized(record.event_name.encode()))
        return _sized(b"".join(parts))

    def _span(self, span: ReadableSpan) -> bytes:
        """One ``Span`` message, length-prefixed."""
        context = span.get_span_context()
        assert context is not None
        parts: list[bytes] = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
                 b"\x12\x08", context.span_id.to_bytes(8, "big")]
        if context.trace_state:
            state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
            parts += (b"\x1a", _sized(state.encode()))
        parent = span.parent
        if parent:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts += (b"\x2a", _sized(span.name.encode()))
        parts.append(_KINDS[span.kind])
        if span.start_time:
            parts += (b"\x39", _FIXED64.pack(span.start_time))
        if span.end_time:
            parts += (b"\x41", _FIXED64.pack(span.end_time))
        if span.attributes:
            parts.append(self._attributes_field(b"\x4a", span.attributes))
        if span.dropped_attributes:
            parts += (b"\x50", _varint(span.dropped_attributes))
        for event in span.events:
            parts += (b"\x5a", self._event(event))
        if span.dropped_events:
            parts += (b"\x60", _varint(span.dropped_events))
        for link in span.links:
            parts += (b"\x6a", self._link(link))
        if span.dropped_links:
            parts += (b"\x70", _varint(span.dropped_links))
        status = span.status
        status_body = b""
        if status.description:
            status_body += b"\x12" + _sized(status.description.encode())
        if status.status_code.value:
            status_body += b"\x18" + _varint(status.status_code.value)
        parts += (b"\x7a", _sized(status_body), b"\x85\x01", _FIXED32.pack(_flags(parent)))
        return _sized(b"".join(parts))

    def _event(self, event: Event) -> bytes:
        body = b"\x09" + _FIXED64.pack(event.timestamp) if event.timestamp else b""
        if event.name:
            body += b"\x12" + _sized(event.name.encode())
        if event.attributes:
            body += self._attributes_field(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        return _sized(body)

    def _link(self, link: Link) -> bytes:
        body = (b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08" + link.context.span_id.to_bytes(8, "big"))
        if link.attributes:
            body += self._attributes_field(b"\x22", link.attributes)
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        return _sized(body + b"\x35" + _FIXED32.pack(_flags(link.context)))

    def _resource(self, resource: Resource) -> bytes:
        """The length-prefixed ``Resource``, encoded once per resource."""
        encoded = self._resources.get(resource)
        if encoded is None:
            encoded = _sized(self._attributes_field(b"\x0a", resource.attributes))
            self._resources = self._bounded(self._resources)
            self._resources[resource] = encoded
        return encoded

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        """The ``scope`` field of a ``ScopeSpans``, encoded once per scope."""
        encoded = self._scopes.get(scope)
        if encoded is None:
            body = b""
            if scope is not None:
                if scope.name:
                    body += b"\x0a" + _sized(scope.name.encode())
                if scope.version:
                    body += b"\x12" + _sized(scope.version.encode())
                if scope.attributes:
                    body += self._attributes_field(b"\x1a", scope.attributes)
            encoded = b"\x0a" + _sized(body)
            self._scopes = self._bounded(self._scopes)
            self._scopes[scope] = encoded
        return encoded

    def _attributes_field(self, tag: bytes, attributes: Mapping[str, Any]) -> bytes:
        """Every attribute as a repeated ``KeyValue`` field ``tag``; an attribute that cannot be
        encoded is logged (by key and type, never value) and left out, as the SDK's encoder
        leaves it out."""
        cache = self._attributes
        parts: list[bytes] = []
        for key, value in attributes.items():
            cacheable = isinstance(value, (str, int, float))  # bool is an int
            if cacheable:
                cached = cache.get((key, value.__class__, value))
                if cached is not None:
                    parts += (tag, cached)
                    continue
            try:
                encoded = _sized(_key_value(key, value))
            except Exception as error:  # noqa: BLE001 - one bad attribute must not drop the span
                _log.error("Failed to encode key %s: %s", key, error)
                continue
            if cacheable:
                if len(cache) >= self._limit:
                    cache.clear()
                cache[(key, value.__class__, value)] = encoded
            parts += (tag, encoded)
        return b"".join(parts)

    def _bounded(self, cache: dict) -> dict:
        return cache if len(cache) < self._limit else {}


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if context is not None and context.is_remote \
        else _HAS_IS_REMOTE


class EncodedRequest:
    """Bytes in the shape of the message the OTLP/HTTP span exporter serialises."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializePartialToString(self) -> bytes:  # noqa: N802 - the protobuf method's name
        return self._data

    SerializeToString = SerializePartialToString


class _Encode:
    """Stands in for an OTLP/HTTP exporter module's ``encode_spans`` or ``encode_logs``."""

    def __init__(self, encode: Callable[[OtlpEncoder, Sequence[Any]], bytes]) -> None:
        self._encoder = OtlpEncoder()
        self._encode = encode

    def __call__(self, items: Sequence[Any]) -> EncodedRequest:
        return EncodedRequest(self._encode(self._encoder, items))


def install() -> None:
    """Make the OTLP/HTTP span and log exporters encode with an :class:`OtlpEncoder` each.

    Their export methods call their module's ``encode_spans`` / ``encode_logs``; replacing that
    one name keeps the rest of each exporter (compression, retries, size limit, its own metrics)
    as it is.
    """
    from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter

    if not isinstance(trace_exporter.encode_spans, _Encode):
        trace_exporter.encode_spans = _Encode(OtlpEncoder.spans)  # type: ignore[assignment]
    if not isinstance(_log_exporter.encode_logs, _Encode):
        _log_exporter.encode_logs = _Encode(OtlpEncoder.logs)  # type: ignore[assignment]
