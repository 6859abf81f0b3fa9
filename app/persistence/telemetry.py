"""Spans, metrics and slow-operation logs for every Supabase call the archive makes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanKind

from otel.instruments import counter, histogram
from otel.propagation import extract_context

from . import names
from .errors import classify

if TYPE_CHECKING:
    from otel.instruments import Instruments

log = logging.getLogger("exai.persistence")

REST_PREFIX = "/rest/v1/"


def table_of(path: str) -> str | None:
    """The table a PostgREST path addresses (``/rest/v1/messages`` -> ``messages``)."""
    if REST_PREFIX not in path:
        return None
    rest = path.split(REST_PREFIX, 1)[1].strip("/")
    return rest.split("/", 1)[0] or None


def link_to(carrier: dict[str, str]) -> list[Link]:
    context = trace.get_current_span(extract_context(carrier)).get_span_context()
    return [Link(context)] if context.is_valid else []


class SupabaseTelemetry:
    """Everything the archive records; works with no instruments (then it records nothing)."""

    def __init__(self, instruments: Instruments | None = None, supabase_url: str = "") -> None:
        self.instruments = instruments
        self.tracer: trace.Tracer = instruments.tracer if instruments else trace.NoOpTracer()
        meter: metrics.Meter = instruments.meter if instruments else metrics.NoOpMeter("exai")
        self.meter = meter
        parts = urlsplit(supabase_url) if supabase_url else None
        self.server_address = parts.hostname if parts else None
        self.server_port = ((parts.port or (443 if parts.scheme == "https" else 80))
                            if parts else None)
        self.duration = histogram(meter, names.OPERATION_DURATION)
        self.slow = counter(meter, names.OPERATION_SLOW)
        self.failures = counter(meter, names.OUTBOX_DELIVERY_FAILURES)
        self.dropped = counter(meter, names.OUTBOX_DROPPED)

    def register_gauges(self, read: Callable[[], Any]) -> None:
        """Depth, age and dead letters of the outbox, read from ``read()`` at each export."""
        if self.instruments is None:
            return

        def gauge(attr: str) -> Callable[[], Iterable[tuple[float, dict[str, str]]]]:
            def values() -> Iterable[tuple[float, dict[str, str]]]:
                stats = read()
                if stats is None:
                    return []
                return [(float(getattr(stats, attr)), {names.OUTBOX_BACKEND: stats.backend})]
            return values

        self.instruments.observe_gauge(names.OUTBOX_DEPTH, gauge("depth"))
        self.instruments.observe_gauge(names.OUTBOX_AGE, gauge("oldest_age_s"))
        self.instruments.observe_gauge(names.OUTBOX_DEAD_LETTERS, gauge("dead_letters"))

    def _base_attributes(self, operation: str, table: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            names.DB_SYSTEM_NAME: names.DB_SYSTEM_VALUE,
            names.DB_OPERATION_NAME: operation,
            names.DB_COLLECTION_NAME: table,
        }
        if self.server_address:
            attributes[names.SERVER_ADDRESS] = self.server_address
            attributes[names.SERVER_PORT] = self.server_port
        return attributes

    @asynccontextmanager
    async def operation(self, operation: str, table: str) -> AsyncIterator[Span]:
        """A span ``supabase {operation} {table}`` around one call, its duration, and slowness.

        The httpx span of the request is its child, renamed ``{METHOD} /rest/v1/{table}``.
        """
        attributes = self._base_attributes(operation, table)
        metric_attributes = {names.DB_OPERATION_NAME: operation, names.DB_COLLECTION_NAME: table}
        started = time.perf_counter()
        with self.tracer.start_as_current_span(f"supabase {operation} {table}",
                                               kind=SpanKind.INTERNAL,
                                               attributes=attributes) as span:
            try:
                yield span
            except BaseException as exc:
                error_type = (classify(exc).error_type if isinstance(exc, Exception)
                              else "cancelled")
                metric_attributes[names.ERROR_TYPE] = error_type
                span.set_attribute(names.ERROR_TYPE, error_type)
                raise
            finally:
                elapsed = time.perf_counter() - started
                self.duration.record(elapsed, metric_attributes)
                if elapsed > names.SLOW_OPERATION_SECS:
                    span.set_attribute(names.SLOW, True)
                    self.slow.add(1, metric_attributes)
                    trace_id = format(span.get_span_context().trace_id, "032x")
                    log.warning("slow Supabase operation: %s %s took %.3f s (over %.1f s), "
                                "trace_id=%s", operation, table, elapsed,
                                names.SLOW_OPERATION_SECS, trace_id)

    def delivery_span(self, continuation_id: str, messages: int, attempt: int,
                      trace_context: dict[str, str]) -> Any:
        """The span around one delivery attempt, linked to the chat that recorded the write."""
        return self.tracer.start_as_current_span(
            names.DELIVERY_SPAN, kind=SpanKind.INTERNAL, links=link_to(trace_context),
            attributes={names.DB_SYSTEM_NAME: names.DB_SYSTEM_VALUE,
                        names.GEN_AI_CONVERSATION_ID: continuation_id,
                        names.OUTBOX_MESSAGES: messages,
                        names.OUTBOX_ATTEMPT: attempt})

    def failure(self, error_type: str, disposition: str) -> None:
        self.failures.add(1, {names.ERROR_TYPE: error_type, names.FAILURE_DISPOSITION: disposition})

    async def httpx_request_hook(self, span: Span, request: Any) -> None:
        """Name the httpx client span after the table: ``POST /rest/v1/messages``."""
        if span is None or not span.is_recording():
            return
        url = request.url
        path = url.path if hasattr(url, "path") else (url[3].decode() if len(url) > 3 else "")
        table = table_of(path.split("?", 1)[0])
        if table is None:
            return
        method = (request.method.decode() if isinstance(request.method, bytes)
                  else str(request.method))
        template = f"{REST_PREFIX}{table}"
        span.update_name(f"{method} {template}")
        span.set_attribute("url.template", template)
        span.set_attribute(names.DB_COLLECTION_NAME, table)
