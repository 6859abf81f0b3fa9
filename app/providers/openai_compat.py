"""One OpenAI-compatible chat-completions provider (Kimi or GLM) over a shared httpx client.

``Provider.chat`` sends one chat call, streamed or not, with retries and a circuit breaker, and
turns every failure into a :class:`ProviderError`. Telemetry is delegated to ``otel.genai``: the
GenAI span is current while the HTTP request runs, so the httpx request span is its child.

Cancellation is real: a ``CancelledError`` (tool timeout, client cancel or disconnect) raised while
waiting on the network unwinds through ``httpx``'s stream context, which closes the connection, so
the upstream sees the request abandoned; the span then ends with ``error.type=cancelled``.

Nothing the upstream sends is held unbounded. An answer (a JSON body, or all the bytes of an
event stream) larger than ``max_response_bytes`` is refused as ``response_too_large`` as soon as
the excess arrives, and the connection is closed rather than read to its end; an error body is
read to 64 KiB at most, and its connection closed if there was more. ``response_too_large`` is not
retried (the same question would get the same answer) and is *neutral* for the circuit breaker:
an upstream that talks too much is not down, and opening the circuit would refuse the callers
whose answers fit.

The API key is only ever put in the ``Authorization`` header. It is not in the URL, in any
attribute, log line, exception message or ``repr``; an upstream error code that contains it or
looks like any credential is dropped (:func:`upstream_code`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from app import pricing
from app.errors import ErrorCode, ExaiError
from otel import genai, redaction
from otel.instruments import Instruments

from . import retry, sse
from .base import ChatRequest, ChatResult, OnChunk, ProviderError, Usage
from .circuit import CircuitBreaker, Permit

Sleep = Callable[[float], Awaitable[None]]
_ERROR_BODY_LIMIT = 64 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KEY_FRAGMENT_CHARS = 8  # a code this long found inside the key is a piece of the key


@dataclass(frozen=True)
class ProviderSpec:
    """Who the provider is and where it lives. ``api_key`` is a SecretStr so it never prints."""

    key: str  # "kimi" | "glm"
    otel_name: str  # gen_ai.provider.name: "moonshot_ai" | "z_ai"
    base_url: str
    api_key: SecretStr = field(default_factory=lambda: SecretStr(""), repr=False)


class _Retryable(ExaiError):
    """An attempt failed in a way worth retrying; carries the error to raise if we stop."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message)
        self.error = error


class Provider:
    """Chat calls to one provider. Cheap to hold; all state is the breaker and the spec."""

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient, instruments: Instruments, *,
                 timeout_secs: float, retry_policy: retry.RetryPolicy, breaker: CircuitBreaker,
                 max_response_bytes: int, sleep: Sleep = asyncio.sleep,
                 rand: Callable[[], float] | None = None) -> None:
        self._spec = spec
        self._max_response_bytes = max_response_bytes
        self._client = client
        self._instruments = instruments
        self._timeout = httpx.Timeout(timeout_secs)
        self._policy = retry_policy
        self.breaker = breaker
        self._sleep = sleep
        self._rand = rand
        url = httpx.URL(spec.base_url.rstrip("/") + "/chat/completions")
        self._url = url
        self._server_address = url.host or None
        self._server_port = url.port or (443 if url.scheme == "https" else 80)

    def __repr__(self) -> str:
        return (f"Provider(key={self.key!r}, base_url={self.base_url!r}, "
                f"configured={self.configured})")

    @property
    def key(self) -> str:
        return self._spec.key

    @property
    def otel_name(self) -> str:
        return self._spec.otel_name

    @property
    def base_url(self) -> str:
        """The base URL without any user-info, query or fragment (safe to show)."""
        url = httpx.URL(self._spec.base_url)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))

    @property
    def configured(self) -> bool:
        return bool(self._spec.api_key.get_secret_value())

    @property
    def circuit_state(self) -> str:
        return self.breaker.state

    async def chat(self, request: ChatRequest, on_chunk: OnChunk | None = None) -> ChatResult:
        """Send ``request``; stream iff ``request.stream``, passing each text delta to ``on_chunk``.

        Raises ProviderError on any provider failure; re-raises CancelledError and whatever
        ``on_chunk`` raises (after closing the stream and ending the span).
        """
        info = genai.ChatCallInfo(
            provider_name=self.otel_name, request_model=request.model, stream=request.stream,
            server_address=self._server_address, server_port=self._server_port,
            temperature=request.temperature, max_tokens=request.max_tokens,
            conversation_id=request.conversation_id, messages=request.messages)
        with genai.chat_call(self._instruments, info, pricing.TABLE) as call:
            permit = self._admit()
            outcome = "neutral"
            try:
                result = await self._with_retries(request, on_chunk, call)
                outcome = "success"
            except ProviderError as exc:
                outcome = "failure" if _is_provider_side(exc) else "neutral"
                raise
            finally:
                self._settle(permit, outcome)
            call.set_response(response_model=result.response_model,
                              response_id=result.response_id, finish_reason=result.finish_reason,
                              usage=result.usage, cost_usd=result.cost_usd, text=result.text)
            return result

    # --- admission and outcome ----------------------------------------------------------------

    def _admit(self) -> Permit:
        if not self.configured:
            raise ProviderError(ErrorCode.PROVIDER_UNAVAILABLE, "no_api_key",
                                f"{self.key}: no API key is configured", provider=self.key)
        permit = self.breaker.try_acquire()
        if permit is None:
            wait = self.breaker.retry_after()
            raise ProviderError(ErrorCode.PROVIDER_UNAVAILABLE, "circuit_open",
                                f"{self.key}: circuit open after repeated provider failures; "
                                f"retry in {wait:.1f}s", retry_after=wait or None,
                                provider=self.key)
        return permit

    def _settle(self, permit: Permit, outcome: str) -> None:
        if outcome == "success":
            self.breaker.record_success(permit)
        elif outcome == "failure":
            self.breaker.record_failure(permit)
        else:
            self.breaker.record_neutral(permit)

    # --- attempts -----------------------------------------------------------------------------

    async def _with_retries(self, request: ChatRequest, on_chunk: OnChunk | None,
                            call: genai.ChatCall) -> ChatResult:
        attempt = 0
        while True:
            try:
                if request.stream:
                    return await self._stream_once(request, on_chunk, call)
                return await self._complete_once(request, call)
            except _Retryable as failed:
                kwargs = {} if self._rand is None else {"rand": self._rand}
                delay = retry.retry_delay(attempt, self._policy, failed.error.retry_after, **kwargs)
                if delay is None:
                    raise failed.error from None
                call.span.add_event("exai.gen_ai.retry", {
                    "exai.retry.attempt": attempt + 1, "exai.retry.delay_s": delay,
                    "error.type": failed.error.error_type})
                await self._sleep(delay)
                attempt += 1

    @contextlib.asynccontextmanager
    async def _post(self, request: ChatRequest) -> AsyncIterator[httpx.Response]:
        """The provider's 200 response to ``request``, read inside the block; another status, a
        transport error or a body over the cap, while connecting or reading, leaves the block as
        the ProviderError it means."""
        try:
            async with self._client.stream("POST", self._url, json=_body(request),
                                           headers=self._headers(stream=request.stream),
                                           timeout=self._timeout) as response:
                if response.status_code != 200:
                    raise self._status_error(response, await _read_prefix(response))
                yield response
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except sse.ResponseTooLarge:
            raise self._too_large() from None

    async def _complete_once(self, request: ChatRequest, call: genai.ChatCall) -> ChatResult:
        async with self._post(request) as response:
            body = await _read_capped(response, self._max_response_bytes)
        try:
            completion = sse.parse_completion(body)
        except sse.ResponseFormatError as exc:
            raise self._invalid(str(exc)) from None
        return self._result(request, call, text=completion.text,
                            response_model=completion.model, response_id=completion.response_id,
                            finish_reason=completion.finish_reason, usage=completion.usage,
                            reasoning=completion.reasoning)

    async def _stream_once(self, request: ChatRequest, on_chunk: OnChunk | None,
                           call: genai.ChatCall) -> ChatResult:
        # Reasoning deltas are only worth keeping for a span that captures content.
        acc = sse.StreamAccumulator(keep_reasoning=call.captures_content)
        async with self._post(request) as response:
            await self._read_events(response, acc, call, on_chunk)
        if not acc.complete:
            raise self._invalid("the stream ended before the answer was complete")
        return self._result(request, call, text=acc.text, response_model=acc.model,
                            response_id=acc.response_id, finish_reason=acc.finish_reason,
                            usage=acc.usage, reasoning=acc.reasoning)

    async def _read_events(self, response: httpx.Response, acc: sse.StreamAccumulator,
                           call: genai.ChatCall, on_chunk: OnChunk | None) -> None:
        """Split the body into lines on bytes (the SSE rule) and handle each event as it ends.

        Reads to the end of the body even after [DONE], so the connection can be reused; the
        body's bytes, and so each line's, are capped at ``max_response_bytes``.
        """
        limit = self._max_response_bytes
        lines = sse.LineSplitter(limit)
        decoder = sse.SSEDecoder()
        async for part in _capped(response.aiter_bytes(), limit):
            for line in lines.feed(part):
                await self._on_decoded(decoder.feed(line), acc, call, on_chunk)
        for line in lines.close():
            await self._on_decoded(decoder.feed(line), acc, call, on_chunk)
        await self._on_decoded(decoder.close(), acc, call, on_chunk)

    async def _on_decoded(self, data: str | None, acc: sse.StreamAccumulator,
                          call: genai.ChatCall, on_chunk: OnChunk | None) -> None:
        """Handle what the decoder gave back: an event's data, or None while none has ended."""
        if data is not None:
            await self._on_event(data, acc, call, on_chunk)

    async def _on_event(self, data: str, acc: sse.StreamAccumulator, call: genai.ChatCall,
                        on_chunk: OnChunk | None) -> None:
        """Handle one SSE event: account for it and pass its answer text on (never its
        reasoning text: the client gets the answer only)."""
        call.first_chunk()
        if acc.done:
            return
        if data.strip() == sse.DONE:
            acc.done = True
            return
        try:
            chunk = sse.parse_chunk(data)
        except sse.StreamErrorEvent:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, "stream_error",
                                f"{self.key}: the provider reported an error mid-stream",
                                provider=self.key) from None
        except sse.ResponseFormatError as exc:
            raise self._invalid(str(exc)) from None
        acc.add(chunk)
        if chunk.carries_output:
            call.output_chunk(acc.model)
        if chunk.text and on_chunk is not None:
            await on_chunk(chunk.text)

    # --- building results and errors ----------------------------------------------------------

    def _headers(self, *, stream: bool) -> dict[str, str]:
        # identity: the answer cap counts decoded bytes, and one compressed read of 64 KiB can
        # inflate to tens of MiB before it is counted; chat answers gain little from gzip.
        return {"Authorization": f"Bearer {self._spec.api_key.get_secret_value()}",
                "Accept": "text/event-stream" if stream else "application/json",
                "Accept-Encoding": "identity"}

    def _result(self, request: ChatRequest, call: genai.ChatCall, *, text: str,
                response_model: str | None, response_id: str | None,
                finish_reason: str | None, usage: Usage | None, reasoning: str) -> ChatResult:
        call.set_reasoning(reasoning)  # for the span only (when capturing); not in the result
        model = response_model or request.model
        return ChatResult(text=text, response_model=model, response_id=response_id,
                          finish_reason=finish_reason, usage=usage,
                          cost_usd=call_cost(model, request.model, usage),
                          time_to_first_chunk_s=call.time_to_first_chunk,
                          latency_s=call.elapsed(), provider=self.key, model=request.model)

    def _status_error(self, response: httpx.Response, body: bytes) -> Exception:
        status = response.status_code
        retry_after = retry.parse_retry_after(response.headers.get("retry-after"))
        detail = upstream_code(body, [self._spec.api_key.get_secret_value()])
        message = f"{self.key}: HTTP {status}" + (f" ({detail})" if detail else "")
        error = ProviderError(ErrorCode.PROVIDER_ERROR, str(status), message,
                              retry_after=retry_after, provider=self.key, status_code=status)
        return _Retryable(error) if retry.is_retryable_status(status) else error

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        # Never put str(exc) in the message: it is httpx's text, outside our control.
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return _Retryable(ProviderError(ErrorCode.PROVIDER_ERROR, "connect_error",
                                            f"{self.key}: could not connect to the provider",
                                            provider=self.key))
        if isinstance(exc, httpx.TimeoutException):
            return ProviderError(ErrorCode.PROVIDER_ERROR, "timeout",
                                 f"{self.key}: no answer within {self._timeout.read}s",
                                 provider=self.key)
        return ProviderError(ErrorCode.PROVIDER_ERROR, "network_error",
                             f"{self.key}: the connection failed ({type(exc).__name__})",
                             provider=self.key)

    def _too_large(self) -> ProviderError:
        return ProviderError(ErrorCode.PROVIDER_ERROR, "response_too_large",
                             f"{self.key}: the answer exceeded {self._max_response_bytes} bytes",
                             provider=self.key)

    def _invalid(self, why: str) -> ProviderError:
        return ProviderError(ErrorCode.PROVIDER_ERROR, "invalid_response", f"{self.key}: {why}",
                             provider=self.key)


def call_cost(response_model: str | None, request_model: str, usage: Usage | None) -> float | None:
    """Price by the model that answered, falling back to the one asked for (aliases)."""
    if pricing.price_for(response_model) is not None:
        return pricing.cost_usd(response_model, usage)
    return pricing.cost_usd(request_model, usage)


def _body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": request.messages,
                            "stream": request.stream}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _is_provider_side(exc: ProviderError) -> bool:
    """Failures that say the provider is unwell (and so feed the circuit breaker).

    Not ``response_too_large``: an answer past our cap says nothing about the provider's health.
    """
    if exc.status_code is not None:
        return retry.is_retryable_status(exc.status_code)
    return exc.error_type in {"timeout", "connect_error", "network_error", "invalid_response",
                              "stream_error"}


async def _capped(parts: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """``parts`` until more than ``limit`` bytes in all, then ResponseTooLarge (read no further)."""
    received = 0
    async for part in parts:
        received += len(part)
        if received > limit:
            raise sse.ResponseTooLarge(limit)
        yield part


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole body, or ResponseTooLarge once it passes ``limit`` bytes."""
    body = bytearray()
    async for part in _capped(response.aiter_bytes(), limit):
        body += part
    return bytes(body)


async def _read_prefix(response: httpx.Response) -> bytes:
    """At most the first ``_ERROR_BODY_LIMIT`` bytes of an error body: enough for its code.

    The rest is left unread, so leaving the stream closes the connection instead of reusing it.
    """
    body = bytearray()
    async for part in response.aiter_bytes():
        body += part[:_ERROR_BODY_LIMIT - len(body)]
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return bytes(body)


def upstream_code(body: bytes, secrets: Sequence[str]) -> str | None:
    """The upstream's machine-readable error code or type, if it is a short token safe to show.

    The upstream's free-text message is deliberately dropped: it may quote the request. A code is
    dropped too when it holds one of ``secrets`` (or a piece of one) or looks like a credential
    to ``otel.redaction`` (some gateways echo the caller's key as the code).
    """
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return None
    for key in ("code", "type"):
        value = err.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            if _is_safe_code(str(value), secrets):
                return str(value)
    return None


def _is_safe_code(code: str, secrets: Sequence[str]) -> bool:
    """A short token that is no secret, no piece of one, and nothing ``scrub`` would mask."""
    if not _TOKEN.match(code) or redaction.scrub(code, secrets) != code:
        return False
    return not any(secret and len(code) >= _KEY_FRAGMENT_CHARS and code in secret
                   for secret in secrets)
