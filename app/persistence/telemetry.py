"""Spans, metrics and slow-operation logs for every Supabase call the archive makes.

A call is a database client operation, traced by the database conventions: a CLIENT span
``{db.operation.name} {db.collection.name}`` (``upsert messages``). Supabase is PostgreSQL behind
PostgREST and the conventions list no value for either, so ``db.system.name`` is their
``postgresql`` (a listed value that applies MUST be used), ``db.namespace`` the schema the client
addresses (supabase-py's ``public``; the database name is not known to a REST client),
``db.response.status_code`` the SQLSTATE of a failure when PostgreSQL gave one, and
``server.address`` / ``server.port`` those of ``SUPABASE_URL``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.semconv.attributes.db_attributes import DbSystemNameValues
from opentelemetry.trace import Link, Span, SpanKind

from otel import names as catalogue
from otel.instruments import counter, histogram
from otel.propagation import extract_context

from . import names
from .errors import classify

if TYPE_CHECKING:
    from otel.instruments import Instruments

log = logging.getLogger("exai.persistence")

REST_PREFIX = "/rest/v1/"
DB_SYSTEM = DbSystemNameValues.POSTGRESQL.value
# A PostgreSQL error code: five digits or capitals (23514). PostgREST's own (PGRST205) and HTTP
# statuses (503) are not the database's answer.
_SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")


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

    def _base_attributes(self, operation: str, table: str, schema: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            names.DB_SYSTEM_NAME: DB_SYSTEM,
            catalogue.DB_NAMESPACE: schema,
            names.DB_OPERATION_NAME: operation,
            names.DB_COLLECTION_NAME: table,
        }
        if self.server_address:
            attributes[names.SERVER_ADDRESS] = self.server_address
            attributes[names.SERVER_PORT] = self.server_port
        return attributes

    @asynccontextmanager
    async def operation(self, operation: str, table: str,
                        schema: str = "public") -> AsyncIterator[Span]:
        """A CLIENT span ``{operation} {table}`` around one call, its duration, and slowness.

        The httpx span of the request is its child, renamed ``{METHOD} /rest/v1/{table}``.
        """
        attributes = self._base_attributes(operation, table, schema)
        metric_attributes = {names.DB_OPERATION_NAME: operation, names.DB_COLLECTION_NAME: table}
        started = time.perf_counter()
        with self.tracer.start_as_current_span(f"{operation} {table}", kind=SpanKind.CLIENT,
                                               attributes=attributes) as span:
            try:
                yield span
            except BaseException as exc:
                if isinstance(exc, Exception):
                    error = classify(exc)
                    error_type = error.error_type
                    if error.code and _SQLSTATE.match(error.code):
                        span.set_attribute(catalogue.DB_RESPONSE_STATUS_CODE, error.code)
                else:
                    error_type = "cancelled"
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
        """The span around one delivery attempt, linked to the chat that recorded the write.

        Not a database call itself (its children are), so it names no ``db.system.name``."""
        return self.tracer.start_as_current_span(
            names.DELIVERY_SPAN, kind=SpanKind.INTERNAL, links=link_to(trace_context),
            attributes={names.GEN_AI_CONVERSATION_ID: continuation_id,
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
