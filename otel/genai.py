"""Telemetry of one LLM provider call: the GenAI CLIENT span and the ``gen_ai.client.*`` metrics.

Kept apart from the providers so that their code reads as HTTP and JSON, not as telemetry. Use::

    with chat_call(instruments, info, prices) as call:   # span started and made current
        ...                                       # the httpx request span becomes its child
        call.first_chunk()                        # streaming: time to first chunk
        call.output_chunk()                       # streaming: each chunk carrying output
        call.set_reasoning(text)                  # the model's reasoning (kept only if captured)
        call.set_response(...)                    # model, id, finish reason, usage, cost
    # leaving the block ends the span exactly once: success, error, CancelledError or any other
    # exception (e.g. the consumer of a stream went away), and records the metrics. A call that
    # fails or is cancelled gets ``gen_ai.response.finish_reasons = ["error"]`` (the conventions'
    # finish reason for an error) next to its ``error.type``.

Reasoning tokens are part of the output tokens, as the conventions say of
``gen_ai.usage.reasoning.output_tokens`` ("SHOULD be included in gen_ai.usage.output_tokens"):
``gen_ai.client.token.usage`` has no reasoning token type (``gen_ai.token.type`` is ``input`` or
``output``), so its ``output`` measurement includes them, and
``exai.gen_ai.reasoning_output_tokens`` counts the reasoning share, as
``exai.gen_ai.cached_input_tokens`` does for input.

Privacy: prompt, answer and reasoning text go on the span only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``SPAN_ONLY``, ``SPAN_AND_EVENT`` or
``true`` (the reasoning as a ``reasoning`` part of ``gen_ai.output.messages``); by default nothing
but sizes and counts leaves the process. ``EVENT_ONLY`` captures nothing here because this module
emits no events. Metric attributes are bounded: models outside the price table are reported as
``_OTHER`` and no id ever becomes a label.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import names
from .errors import error_type_of
from .instruments import Instruments

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON_SPAN = frozenset({"span_only", "span_and_event", "true"})
OPERATION_CHAT = "chat"
FINISH_REASON_ERROR = "error"  # the conventions' finish reason for a generation that failed


class UsageLike(Protocol):
    """Token counts as providers report them; cached tokens are a subset of the input tokens,
    reasoning tokens (None when not reported) a subset of the output tokens."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cached_input_tokens(self) -> int: ...

    @property
    def reasoning_output_tokens(self) -> int | None: ...


class PriceLabels(Protocol):
    """What telemetry needs of the price table: its version, and bounded model labels."""

    @property
    def version(self) -> str: ...

    def metric_model(self, model: str | None) -> str: ...


def capture_content_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether message content may be put on spans (read per call, so it can change at run time)."""
    value = (environ if environ is not None else os.environ).get(CAPTURE_CONTENT_ENV, "")
    return value.strip().lower() in _CAPTURE_ON_SPAN


@dataclass(frozen=True)
class ChatCallInfo:
    """What is known about a chat call before it is sent."""

    provider_name: str
    request_model: str
    stream: bool
    server_address: str | None = None
    server_port: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    conversation_id: str | None = None
    messages: Sequence[Mapping[str, str]] = field(default=(), repr=False)


class ChatCall:
    """One call's span and measurements. Create it with :func:`chat_call`."""

    def __init__(self, instruments: Instruments, info: ChatCallInfo, prices: PriceLabels,
                 clock: Callable[[], float] = time.perf_counter,
                 capture_content: bool | None = None) -> None:
        self._instruments = instruments
        self._info = info
        self._prices = prices
        self._clock = clock
        self._capture = capture_content_enabled() if capture_content is None else capture_content
        self._started = clock()
        self._ttfc: float | None = None
        self._last_output: float | None = None
        self._chunk_attrs: tuple[str | None, dict[str, str]] | None = None  # (model, attributes)
        self._ended = False
        self._response_model: str | None = None
        self._finish_reason: str | None = None
        self._usage: UsageLike | None = None
        self._cost: float | None = None
        self._reasoning: str | None = None
        self.span = instruments.tracer.start_span(
            f"{OPERATION_CHAT} {info.request_model}", kind=SpanKind.CLIENT,
            attributes=self._request_attributes())

    @property
    def ended(self) -> bool:
        return self._ended

    def elapsed(self) -> float:
        return self._clock() - self._started

    def first_chunk(self) -> float:
        """Mark the first streamed chunk (only the first call counts); returns the time to it."""
        if self._ttfc is None:
            self._ttfc = self.elapsed()
        return self._ttfc

    @property
    def time_to_first_chunk(self) -> float | None:
        return self._ttfc

    def output_chunk(self, response_model: str | None = None) -> None:
        """Mark a streamed chunk that carries output (answer or reasoning text), from a stream that
        says it comes from ``response_model``. From the second such chunk on, the time since the
        previous one is a ``gen_ai.client.operation.time_per_output_chunk`` measurement.

        Recorded as the chunk arrives (one histogram measurement, ~15 us), not kept for the end of
        the call: a stream of thousands of chunks would then block the event loop for as many
        measurements at once. So it carries the attributes known by then: those of the other GenAI
        metrics but ``error.type`` (which the convention does not list for this metric), with the
        model the stream named as the response model (else the one asked for, as on success)."""
        now = self._clock()
        if self._last_output is not None:
            model = response_model or self._info.request_model
            if self._chunk_attrs is None or self._chunk_attrs[0] != model:
                self._chunk_attrs = (model, self._metric_attributes(None, model))
            self._instruments.genai_time_per_chunk.record(now - self._last_output,
                                                          self._chunk_attrs[1])
        self._last_output = now

    @property
    def captures_content(self) -> bool:
        """Whether message content (prompt, answer, reasoning) goes on this call's span."""
        return self._capture

    def set_reasoning(self, text: str) -> None:
        """The model's reasoning text: kept for ``gen_ai.output.messages`` only when content
        capture is on, dropped otherwise."""
        if self._capture and text:
            self._reasoning = text

    def set_response(self, *, response_model: str | None, response_id: str | None,
                     finish_reason: str | None, usage: UsageLike | None,
                     cost_usd: float | None, text: str | None = None) -> None:
        """Record what the provider answered (before the block ends)."""
        self._response_model = response_model
        self._finish_reason = finish_reason
        self._usage = usage
        self._cost = cost_usd
        attrs: dict[str, Any] = {}
        if response_model:
            attrs[names.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id:
            attrs[names.GEN_AI_RESPONSE_ID] = response_id
        if finish_reason:
            attrs[names.GEN_AI_RESPONSE_FINISH_REASONS] = [finish_reason]
        if usage is not None:
            attrs[names.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            attrs[names.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
            attrs[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_input_tokens
            if usage.reasoning_output_tokens is not None:
                attrs[names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_output_tokens
        if cost_usd is not None:
            attrs[names.GEN_AI_USAGE_COST] = cost_usd
            attrs[names.EXAI_PRICE_TABLE_VERSION] = self._prices.version
        if self._capture and text is not None:
            parts = [{"type": "reasoning", "content": self._reasoning}] if self._reasoning else []
            parts.append({"type": "text", "content": text})
            attrs[names.GEN_AI_OUTPUT_MESSAGES] = json.dumps(
                [{"role": "assistant", "parts": parts, "finish_reason": finish_reason or ""}],
                ensure_ascii=False)
        self.span.set_attributes(attrs)

    def end(self, error_type: str | None = None, description: str | None = None) -> None:
        """End the span and record the metrics; every call after the first does nothing."""
        if self._ended:
            return
        self._ended = True
        duration = self.elapsed()
        try:
            self._record_metrics(duration, error_type)
            if self._ttfc is not None:
                self.span.set_attribute(names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._ttfc)
            if error_type is not None:
                self.span.set_attributes({names.ERROR_TYPE: error_type,
                                          names.GEN_AI_RESPONSE_FINISH_REASONS:
                                              [FINISH_REASON_ERROR]})
                self.span.set_status(Status(StatusCode.ERROR, description or error_type))
        finally:
            self.span.end()

    # --- internals ---------------------------------------------------------------------------

    def _request_attributes(self) -> dict[str, Any]:
        info = self._info
        attrs: dict[str, Any] = {
            names.GEN_AI_OPERATION_NAME: OPERATION_CHAT,
            names.GEN_AI_PROVIDER_NAME: info.provider_name,
            names.GEN_AI_REQUEST_MODEL: info.request_model,
            names.GEN_AI_REQUEST_STREAM: info.stream,
        }
        if info.temperature is not None:
            attrs[names.GEN_AI_REQUEST_TEMPERATURE] = info.temperature
        if info.max_tokens is not None:
            attrs[names.GEN_AI_REQUEST_MAX_TOKENS] = info.max_tokens
        if info.conversation_id:
            attrs[names.GEN_AI_CONVERSATION_ID] = info.conversation_id
        if info.server_address:
            attrs[names.SERVER_ADDRESS] = info.server_address
        if info.server_port is not None:
            attrs[names.SERVER_PORT] = info.server_port
        if self._capture:
            attrs.update(_content_attributes(info.messages))
        return attrs

    def _metric_attributes(self, error_type: str | None,
                           response_model: str | None) -> dict[str, str]:
        attrs = {
            names.GEN_AI_OPERATION_NAME: OPERATION_CHAT,
            names.GEN_AI_PROVIDER_NAME: self._info.provider_name,
            names.GEN_AI_REQUEST_MODEL: self._prices.metric_model(self._info.request_model),
        }
        if response_model:
            attrs[names.GEN_AI_RESPONSE_MODEL] = self._prices.metric_model(response_model)
        if error_type is not None:
            attrs[names.ERROR_TYPE] = error_type
        return attrs

    def _record_metrics(self, duration: float, error_type: str | None) -> None:
        inst = self._instruments
        attrs = self._metric_attributes(error_type, self._response_model)
        inst.genai_duration.record(duration, attrs)
        if self._ttfc is not None:
            inst.genai_ttfc.record(self._ttfc, attrs)
        if error_type is not None:
            return  # a failure is not a finish reason of the counter's completed calls
        if self._finish_reason:
            inst.genai_finish_reasons.add(
                1, {**attrs, names.GEN_AI_RESPONSE_FINISH_REASONS: _bounded(self._finish_reason)})
        if self._usage is None:
            return
        if self._usage.cached_input_tokens:
            inst.genai_cached_tokens.add(self._usage.cached_input_tokens, attrs)
        if self._usage.reasoning_output_tokens:
            inst.genai_reasoning_tokens.add(self._usage.reasoning_output_tokens, attrs)
        inst.genai_tokens.record(self._usage.input_tokens,
                                 {**attrs, names.GEN_AI_TOKEN_TYPE: "input"})
        inst.genai_tokens.record(self._usage.output_tokens,
                                 {**attrs, names.GEN_AI_TOKEN_TYPE: "output"})
        if self._cost is None:
            inst.genai_unpriced.add(1, attrs)
        else:
            inst.genai_cost.add(
                self._cost, {**attrs, names.EXAI_PRICE_TABLE_VERSION: self._prices.version})


_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call",
                             "sensitive", "network_error", "error"})


def _bounded(finish_reason: str) -> str:
    """A finish reason as a metric label: the known values, else ``_OTHER``."""
    return finish_reason if finish_reason in _FINISH_REASONS else names.OTHER_VALUE


@contextmanager
def chat_call(instruments: Instruments, info: ChatCallInfo, prices: PriceLabels, *,
              clock: Callable[[], float] = time.perf_counter) -> Iterator[ChatCall]:
    """Start a GenAI CLIENT span, make it current for the block, and end it on the way out."""
    call = ChatCall(instruments, info, prices, clock=clock)
    try:
        with trace.use_span(call.span, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):
            yield call
    except BaseException as exc:
        call.end(error_type_of(exc), _safe_description(exc))
        raise
    else:
        call.end()


def _safe_description(exc: BaseException) -> str | None:
    """Only our own error messages go on the status; others may quote upstream or user text."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if hasattr(exc, "error_type"):
        return str(exc)
    return None


def _content_attributes(messages: Sequence[Mapping[str, str]]) -> dict[str, str]:
    system = [{"type": "text", "content": m.get("content", "")}
              for m in messages if m.get("role") == "system"]
    chat = [{"role": m.get("role", "user"),
             "parts": [{"type": "text", "content": m.get("content", "")}]}
            for m in messages if m.get("role") != "system"]
    attrs = {names.GEN_AI_INPUT_MESSAGES: json.dumps(chat, ensure_ascii=False)}
    if system:
        attrs[names.GEN_AI_SYSTEM_INSTRUCTIONS] = json.dumps(system, ensure_ascii=False)
    return attrs
