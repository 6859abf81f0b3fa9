"""The provider-neutral shapes of a chat call: request, result, usage and the one error type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import ErrorCode, ExaiError

OnChunk = Callable[[str], Awaitable[None]]
"""Called with each text delta of a streamed answer, in order, before the call returns."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions call, already resolved to a model the provider serves."""

    model: str
    messages: list[dict[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = False
    conversation_id: str | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens of one call.

    ``cached_input_tokens`` is the part of ``input_tokens`` served from cache;
    ``reasoning_output_tokens`` the part of ``output_tokens`` the model spent reasoning (thinking
    models), None when the provider did not report it (we never invent zeros).
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    reasoning_output_tokens: int | None = None


@dataclass(frozen=True)
class ChatResult:
    """The answer and what it cost.

    ``usage`` is None only when the provider reported no usage at all (we never invent zeros);
    ``cost_usd`` is None when the model is unpriced or usage is unknown.
    """

    text: str
    response_model: str
    response_id: str | None
    finish_reason: str | None
    usage: Usage | None
    cost_usd: float | None
    time_to_first_chunk_s: float | None
    latency_s: float
    provider: str
    model: str


class ProviderError(ExaiError):
    """A provider call failed.

    ``code`` is the daemon's error code for the client (``PROVIDER_ERROR`` or
    ``PROVIDER_UNAVAILABLE``); ``error_type`` is a low-cardinality label
    for telemetry ("429", "500", "timeout", "connect_error", "network_error", "circuit_open",
    "no_api_key", "invalid_response", "stream_error", "response_too_large"); ``retry_after`` is a
    hint in seconds.
    The message never contains the API key, the prompt or the upstream's error text.
    """

    def __init__(self, code: ErrorCode, error_type: str, message: str, *,
                 retry_after: float | None = None, provider: str | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.error_type = error_type
        self.message = message
        self.retry_after = retry_after
        self.provider = provider
        self.status_code = status_code

    def __repr__(self) -> str:
        return (f"ProviderError(code={self.code.value!r}, error_type={self.error_type!r}, "
                f"message={self.message!r}, retry_after={self.retry_after!r})")
