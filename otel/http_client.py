"""The providers' HTTP CLIENT span, made by their transport: the httpx instrumentation's span for
a fraction of its instructions.

``opentelemetry-instrumentation-httpx`` (0.66b2) spends about 0.77 M instructions per request
with its span: it parses the request's URL into a new ``httpx.URL`` twice, normalises the
request's and the response's headers into new dicts although no header is captured, copies the
headers to inject the trace context, sets each response attribute under its own lock and builds
metric attributes for a histogram that is off. ``HttpClientSpans`` makes the same span: the same
name, kind, attributes, status, exception event, parent and instrumentation scope (the
instrumentation's name, version and schema URL), for ``OTEL_SEMCONV_STABILITY_OPT_IN`` unset,
``http`` and ``http/dup``, with the instrumentation's own semconv helpers; the request's URL is
redacted as the instrumentation redacts it, and the request carries the same ``traceparent``.

Only the daemon's own telemetry uses it, for the provider client's transport (``app/providers``);
every other httpx client (Supabase's) keeps the instrumentation. When a setting only the
instrumentation honours is set (captured headers, excluded URLs) it is not used at all.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _report_new,
    _set_http_host_client,
    _set_http_method,
    _set_http_network_protocol_version,
    _set_http_peer_port_client,
    _set_http_status_code,
    _set_http_url,
    _StabilityMode,
)
from opentelemetry.instrumentation.httpx.version import __version__ as HTTPX_INSTRUMENTATION_VERSION
from opentelemetry.instrumentation.utils import (
    http_status_to_status_code,
    is_http_instrumentation_enabled,
)
from opentelemetry.propagate import inject
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE,
    redact_url,
    sanitize_method,
)
from opentelemetry.util.types import AttributeValue

# The instrumentation's scope: its module's name (what it passes to get_tracer).
HTTPX_INSTRUMENTATION_SCOPE = "opentelemetry.instrumentation.httpx"
# Settings that only the instrumentation honours; with any of them set, it makes the spans.
_INSTRUMENTATION_ONLY = (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST,
                         OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE,
                         "OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
_CACHE_LIMIT = 256  # distinct (method, URL) pairs whose request attributes are kept

Send = Callable[[httpx.Request], Awaitable[httpx.Response]]
Attributes = dict[str, AttributeValue]


def instrumentation_only_settings() -> list[str]:
    """The settings in the environment that only the httpx instrumentation honours."""
    return [name for name in _INSTRUMENTATION_ONLY if os.environ.get(name, "").strip()]


class HttpClientSpans:
    """Wraps a transport's sending of one request in the instrumentation's CLIENT span."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        _OpenTelemetrySemanticConventionStability._initialize()
        self._mode = _OpenTelemetrySemanticConventionStability \
            ._get_opentelemetry_stability_opt_in_mode(_OpenTelemetryStabilitySignalType.HTTP)
        self._new = _report_new(self._mode)
        self._tracer = trace.get_tracer(HTTPX_INSTRUMENTATION_SCOPE, HTTPX_INSTRUMENTATION_VERSION,
                                        tracer_provider, schema_url=_get_schema_url(self._mode))
        self._requests: dict[tuple[str, str], tuple[str, Attributes]] = {}

    async def send(self, request: httpx.Request, send: Send) -> httpx.Response:
        """``send(request)`` inside the span, with the trace context in the request's headers."""
        if not is_http_instrumentation_enabled():
            return await send(request)
        name, attributes = self._request(request.method, request.url)
        with self._tracer.start_as_current_span(name, kind=SpanKind.CLIENT,
                                                attributes=attributes) as span:
            inject(request.headers)
            try:
                response = await send(request)
            except Exception as exc:
                if self._new:
                    span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                raise  # recorded and marked an error by the span, as in the instrumentation
            if span.is_recording():
                span.set_attributes(self._response(response))
                span.set_status(http_status_to_status_code(response.status_code,
                                                           server_span=False))
            return response

    def _request(self, method: str, url: httpx.URL) -> tuple[str, Attributes]:
        """The span's name and request attributes, kept per method and URL (a provider's
        endpoint is the same on every call)."""
        key = (method, str(url))
        found = self._requests.get(key)
        if found is None:
            if len(self._requests) >= _CACHE_LIMIT:
                self._requests.clear()
            found = self._requests[key] = _request_attributes(method, url, key[1], self._mode,
                                                              self._new)
        return found[0], dict(found[1])

    def _response(self, response: httpx.Response) -> Attributes:
        attributes: Attributes = {}
        status = response.status_code
        _set_http_status_code(attributes, status, self._mode)
        if self._new:
            if http_status_to_status_code(status, server_span=False) is StatusCode.ERROR:
                attributes[ERROR_TYPE] = str(status)
            if response.http_version:
                _set_http_network_protocol_version(
                    attributes, response.http_version.replace("HTTP/", ""), self._mode)
        return attributes


def _request_attributes(method: str, url: httpx.URL, url_text: str, mode: _StabilityMode,
                        new: bool) -> tuple[str, Attributes]:
    """What the instrumentation's request side sets, in the same way."""
    span_name = sanitize_method(method.strip())
    attributes: Attributes = {}
    _set_http_method(attributes, method, sanitize_method(method), mode)
    _set_http_url(attributes, redact_url(url_text), mode)
    if new:
        if url.host:
            _set_http_host_client(attributes, url.host, mode)
            attributes[NETWORK_PEER_ADDRESS] = url.host
        if url.port:
            _set_http_peer_port_client(attributes, url.port, mode)
            attributes[NETWORK_PEER_PORT] = url.port
    return ("HTTP" if span_name == "_OTHER" else span_name), attributes
