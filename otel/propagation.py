"""W3C trace context in and out: a request's ``_meta`` (MCP's convention), and stored writes.

A valid ``traceparent`` makes the request join the client's trace; anything invalid is ignored
and a new trace starts. It is never an error.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACE_CONTEXT = TraceContextTextMapPropagator()
_PROPAGATOR = CompositePropagator([_TRACE_CONTEXT, W3CBaggagePropagator()])
_FIELDS = ("traceparent", "tracestate", "baggage")
_MAX_FIELD_LENGTH = 8192


def extract_context(meta: Mapping[str, Any] | None) -> otel_context.Context:
    """The parent context carried in ``_meta``; an empty context when there is none or it is bad."""
    carrier = {key: value for key in _FIELDS
               if isinstance(value := (meta or {}).get(key), str)
               and len(value) <= _MAX_FIELD_LENGTH}
    if not carrier.get("traceparent"):
        return otel_context.Context()
    return _PROPAGATOR.extract(carrier, context=otel_context.Context())


def inject_meta(context: otel_context.Context | None = None) -> dict[str, str]:
    """``_meta`` fields for an outgoing request, carrying the current (or given) context."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def trace_context_carrier() -> dict[str, str]:
    """The current span's ``traceparent`` (and ``tracestate``), without baggage: what a stored
    write keeps to link back to the request that made it (empty outside a trace)."""
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier


def with_fresh_trace(parent: otel_context.Context) -> otel_context.Context:
    """Give a context without a valid span a random (non-recording) one.

    Used when the daemon's telemetry is off: it still answers every request with a unique
    ``trace_id`` that its console logs show. The span is marked sampled: with the SDK disabled
    that changes nothing, and under an agent that owns the SDK (``exai`` listed in
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``) the agent's library spans (httpx, redis) are then
    recorded in this trace, so the reply's ``trace_id`` finds them, instead of being dropped by
    a parent-based sampler.
    """
    if trace.get_current_span(parent).get_span_context().is_valid:
        return parent
    span_context = SpanContext(trace_id=int.from_bytes(secrets.token_bytes(16), "big") or 1,
                               span_id=int.from_bytes(secrets.token_bytes(8), "big") or 1,
                               is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(span_context), parent)


def trace_id_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")
