"""Trace helpers for the MCP tests: an editor's span context, and a trace printed as a tree."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.harness.otlp_sink import SinkSpan


@contextmanager
def editor_span() -> Iterator[tuple[str, str]]:
    """Make a sampled remote span current, as an editor's tracing would, so the SDK client puts
    its ``traceparent`` in ``params._meta``. Yields (trace_id, span_id) in hex."""
    trace_id, span_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
    span_context = SpanContext(trace_id, span_id, is_remote=True,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))
    try:
        yield format(trace_id, "032x"), format(span_id, "016x")
    finally:
        otel_context.detach(token)


def render_tree(spans: list[SinkSpan]) -> str:
    """One line per span, indented under its parent: name, kind, service, duration, ids."""
    by_parent: dict[str, list[SinkSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        by_parent.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: (s.service, s.name)):
            lines.append(f"{'  ' * depth}{span.name}  [{span.kind}, {span.service}, "
                         f"{span.duration_secs * 1000:.1f} ms, span {span.span_id}, "
                         f"parent {span.parent_id or '-'}]")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def ancestors(span: SinkSpan, spans: list[SinkSpan]) -> list[SinkSpan]:
    by_id = {s.span_id: s for s in spans}
    chain: list[SinkSpan] = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def one(spans: list[SinkSpan], service: str, kind: str, name: str) -> SinkSpan:
    found = [s for s in spans if (s.service, s.kind, s.name) == (service, kind, name)]
    assert len(found) == 1, (service, kind, name, render_tree(spans))
    return found[0]
