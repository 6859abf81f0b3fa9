"""The provider client's HTTP transport: an ``httpx.AsyncHTTPTransport`` whose pool is aiohttp's.

A chat call's HTTP request through httpx's default pool (httpcore, h11, anyio) cost about 1.9 M
instructions below the ``httpx.AsyncClient`` layer: the pool scans every pooled connection twice
per request (``is_idle`` some 40 times, a readability poll through anyio's attribute table for
each), each read and write opens an anyio cancel scope, and h11 parses in Python. aiohttp's
client, already a dependency, sends the same request with its C parser for about 0.6 M.

The class stays an ``httpx.AsyncHTTPTransport``. Given the daemon's ``HttpClientSpans`` (its own
telemetry is on), it makes each request's CLIENT span itself, the httpx instrumentation's span for
a fraction of the cost, and bypasses the instrumentation's wrapper; without them (telemetry off,
or a zero-code agent owning the SDK) ``handle_async_request`` is httpx's, which the
instrumentation wraps as for any client. Only the object it hands requests to changes. httpx
keeps the client side: headers, cookies, timeouts, decoding, the response stream and its
exceptions. Failures are raised as the httpcore exceptions httpx maps (connect, read and write
errors and timeouts). Leaving a response unread closes its connection, as httpcore does, so the
upstream sees an abandoned request; a response read to its end returns the connection to the pool.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpcore
import httpx
from multidict import CIMultiDict
from yarl import URL

from otel.http_client import HttpClientSpans

# httpx always sends these itself; aiohttp must not add its own.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# h11, httpx's parser, accepts a response head of up to 100 KiB; aiohttp's default line limit
# is 8 KiB, so it is raised to keep accepting what httpx accepted.
_MAX_HEAD_BYTES = 100 * 1024
# httpx's default pool limits (aiohttp has one limit, on all connections).
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def _timeouts(request: httpcore.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts: waiting for a pooled connection, connecting, each read."""
    timeout: dict[str, float | None] = request.extensions.get("timeout", {})
    return aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                 sock_connect=timeout.get("connect"),
                                 sock_read=timeout.get("read"))


def _url(url: httpcore.URL) -> URL:
    host = url.host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port is not None else ""
    return URL(f"{url.scheme.decode('ascii')}://{host}{port}{url.target.decode('ascii')}",
               encoded=True)


def _failure(exc: BaseException, *, reading: bool) -> Exception:
    """The httpcore exception (which httpx maps to its own) for an aiohttp failure. Its text is
    the failure, never the URL (aiohttp's timeout and response errors quote it)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpcore.ConnectTimeout("timed out connecting")
    if isinstance(exc, TimeoutError):
        return httpcore.ReadTimeout("timed out reading")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpcore.ConnectError(str(exc.os_error))
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpcore.RemoteProtocolError(exc.message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpcore.RemoteProtocolError("the server disconnected")
    return httpcore.ReadError(str(exc)) if reading else httpcore.WriteError(str(exc))


class _Body:
    """A response body for httpx: aiohttp's chunks as they arrive; closing it early closes the
    connection instead of returning it to the pool."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc, reading=True) from exc
        self._complete = True

    async def aclose(self) -> None:
        if self._complete:
            self._response.release()
        else:
            self._response.close()


class AiohttpPool:
    """What ``httpx.AsyncHTTPTransport`` sends requests to: httpcore requests in, httpcore
    responses out, over one aiohttp session (created on the first request, in its loop)."""

    def __init__(self, limits: httpx.Limits, ssl_context: Any) -> None:
        self._limits = limits
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0, limit_per_host=0, ssl=self._ssl,
                keepalive_timeout=self._limits.keepalive_expiry or 0)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False, skip_auto_headers=_SKIP_AUTO_HEADERS,
                max_line_size=_MAX_HEAD_BYTES, max_field_size=_MAX_HEAD_BYTES)
        return self._session

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([part async for part in request.stream])
        headers = CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                              for name, value in request.headers)
        try:
            response = await self._client().request(
                request.method.decode("ascii"), _url(request.url), data=body, headers=headers,
                allow_redirects=False, timeout=_timeouts(request))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _failure(exc, reading=False) from exc
        version = response.version or aiohttp.HttpVersion11
        return httpcore.Response(
            response.status, headers=list(response.raw_headers), content=_Body(response),
            extensions={"http_version": f"HTTP/{version.major}.{version.minor}".encode(),
                        "reason_phrase": (response.reason or "").encode("latin-1", "replace")})

    async def __aenter__(self) -> AiohttpPool:
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# httpx's own handle_async_request, under the instrumentation's wrapper when httpx is instrumented
_HTTPX_HANDLE = inspect.unwrap(httpx.AsyncHTTPTransport.handle_async_request)


class ProviderTransport(httpx.AsyncHTTPTransport):
    """HTTP/1.1 to the providers with httpx's limits and TLS verification, sent by aiohttp."""

    def __init__(self, limits: httpx.Limits = LIMITS, spans: HttpClientSpans | None = None) -> None:
        # Not super().__init__: it would build the httpcore pool this one replaces.
        self._pool = AiohttpPool(limits, httpx.create_ssl_context())  # type: ignore[assignment]
        self._spans = spans

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._spans is None:
            return await super().handle_async_request(request)
        return await self._spans.send(request, self._send)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await _HTTPX_HANDLE(self, request)
        return response


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which skips reading a response that sets no cookie.

    httpx hands every response to ``http.cookiejar`` through urllib request and email message
    adapters (about 18 µs a call here); the jar only ever stores ``Set-Cookie`` headers (RFC 2965's
    ``Set-Cookie2`` is off in its default policy), so without one there is nothing to store."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


def make_client(timeout_secs: float, spans: HttpClientSpans | None = None) -> httpx.AsyncClient:
    """The providers' shared client: httpx's, with redirects off, on ``ProviderTransport``."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_secs), follow_redirects=False,
                               transport=ProviderTransport(spans=spans))
    client._cookies = _Cookies()  # the public setter would copy it into a plain Cookies
    return client
