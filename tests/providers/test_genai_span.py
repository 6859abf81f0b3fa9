"""The GenAI span helper on its own: exactly-once ending and error types."""

from __future__ import annotations

import asyncio

import pytest

from app import pricing
from otel import genai, names
from otel.errors import error_type_of

from .conftest import Telemetry

INFO = genai.ChatCallInfo(provider_name="z_ai", request_model="glm-4.5", stream=True,
                          messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("value, on", [("SPAN_ONLY", True), ("span_and_event", True),
                                       ("true", True), ("EVENT_ONLY", False),
                                       ("NO_CONTENT", False), ("", False), ("false", False)])
def test_capture_switch(value: str, on: bool) -> None:
    env = {genai.CAPTURE_CONTENT_ENV: value}
    assert genai.capture_content_enabled(env) is on
    assert genai.capture_content_enabled({}) is False


def test_error_types() -> None:
    from app.errors import ErrorCode
    from app.providers.base import ProviderError

    assert error_type_of(asyncio.CancelledError()) == "cancelled"
    assert error_type_of(ProviderError(ErrorCode.PROVIDER_ERROR, "429", "x")) == "429"
    assert error_type_of(ValueError("user text")) == "ValueError"
    assert error_type_of(ConnectionResetError()) == "ConnectionResetError"


def test_span_ends_once_even_if_ended_again(telemetry: Telemetry) -> None:
    with genai.chat_call(telemetry.instruments, INFO, pricing.TABLE) as call:
        call.first_chunk()
        call.first_chunk()
    call.end("late")  # ignored
    [span] = telemetry.genai_spans()
    assert names.ERROR_TYPE not in span.attributes
    [(_, duration)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.count == 1


def test_exception_message_of_foreign_errors_stays_off_the_span(telemetry: Telemetry) -> None:
    with pytest.raises(RuntimeError):
        with genai.chat_call(telemetry.instruments, INFO, pricing.TABLE):
            raise RuntimeError("SECRET-ISH upstream text")
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "RuntimeError"
    assert "SECRET-ISH" not in (span.status.description or "")
    assert not span.events


def test_span_is_current_inside_the_block(telemetry: Telemetry) -> None:
    from opentelemetry import trace

    with genai.chat_call(telemetry.instruments, INFO, pricing.TABLE) as call:
        assert trace.get_current_span() is call.span
    assert trace.get_current_span() is not call.span
