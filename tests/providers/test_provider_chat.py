"""Chat calls end to end against the fake upstream over loopback, with real httpx, and the
telemetry they leave behind."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

from app import pricing
from app.errors import ErrorCode
from app.fake_llm import answer_for
from app.providers.base import ChatRequest, ProviderError
from otel import names

from .conftest import API_KEY, FakeUpstream, SleepRecorder, Telemetry, settings_for

PROMPT = "PROMPT-CANARY-7f3a: explain the moon's orbit"
MESSAGES = [{"role": "system", "content": "SYSTEM-CANARY-be brief"},
            {"role": "user", "content": PROMPT}]


def _request(model: str, *, stream: bool = False, **kwargs: object) -> ChatRequest:
    return ChatRequest(model=model, messages=MESSAGES, temperature=0.3, max_tokens=256,
                       stream=stream, conversation_id="conv-1", **kwargs)


async def test_non_streaming_kimi_chat_with_cached_tokens_and_cost(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("kimi-k2-0905-preview")
    result = await provider.chat(_request(model))

    words, _ = answer_for(MESSAGES, 256)
    assert result.text == " ".join(words)
    assert PROMPT not in result.text
    assert (result.provider, result.model, result.response_model) == ("kimi", model, model)
    assert result.finish_reason == "stop" and result.response_id
    assert result.usage is not None
    assert result.usage.input_tokens > 0 and result.usage.output_tokens == len(words)
    assert 0 < result.usage.cached_input_tokens < result.usage.input_tokens
    assert result.cost_usd == pytest.approx(pricing.cost_usd(model, result.usage))
    assert result.cost_usd > 0
    assert result.time_to_first_chunk_s is None and result.latency_s > 0

    [span] = telemetry.genai_spans()
    assert span.name == f"chat {model}" and span.kind is SpanKind.CLIENT
    attrs = span.attributes
    assert attrs[names.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[names.GEN_AI_PROVIDER_NAME] == "moonshot_ai"
    assert attrs[names.GEN_AI_REQUEST_MODEL] == model
    assert attrs[names.GEN_AI_RESPONSE_MODEL] == model
    assert attrs[names.GEN_AI_RESPONSE_ID] == result.response_id
    assert tuple(attrs[names.GEN_AI_RESPONSE_FINISH_REASONS]) == ("stop",)
    assert attrs[names.GEN_AI_REQUEST_STREAM] is False
    assert attrs[names.GEN_AI_REQUEST_TEMPERATURE] == 0.3
    assert attrs[names.GEN_AI_REQUEST_MAX_TOKENS] == 256
    assert attrs[names.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert attrs[names.SERVER_ADDRESS] == "127.0.0.1" and attrs[names.SERVER_PORT] == fake.port
    assert attrs[names.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.input_tokens
    assert attrs[names.GEN_AI_USAGE_OUTPUT_TOKENS] == result.usage.output_tokens
    assert attrs[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == result.usage.cached_input_tokens
    assert attrs[names.GEN_AI_USAGE_COST] == pytest.approx(result.cost_usd)
    assert names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in attrs
    assert names.ERROR_TYPE not in attrs
    assert span.status.status_code is not StatusCode.ERROR

    [(dattrs, duration)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.count == 1
    assert dattrs == {names.GEN_AI_OPERATION_NAME: "chat",
                      names.GEN_AI_PROVIDER_NAME: "moonshot_ai",
                      names.GEN_AI_REQUEST_MODEL: model, names.GEN_AI_RESPONSE_MODEL: model}
    tokens = {a[names.GEN_AI_TOKEN_TYPE]: p.sum
              for a, p in telemetry.labelled_points(names.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}
    [(cattrs, cost)] = telemetry.labelled_points(names.EXAI_GEN_AI_COST)
    assert cost.value == pytest.approx(result.cost_usd)
    assert cattrs[names.EXAI_PRICE_TABLE_VERSION] == pricing.version
    assert telemetry.labelled_points(names.EXAI_GEN_AI_UNPRICED_CALLS) == []
    assert telemetry.labelled_points(names.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK) == []


async def test_streaming_glm_chat_delivers_chunks_usage_and_time_to_first_chunk(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(ttft_ms=150, chunk_delay_ms=5)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    chunks: list[str] = []

    async def on_chunk(text: str) -> None:
        chunks.append(text)

    result = await provider.chat(_request(model, stream=True), on_chunk)

    assert len(chunks) > 2 and "".join(chunks) == result.text
    assert result.text == " ".join(answer_for(MESSAGES, 256)[0])
    assert result.usage is not None and result.usage.cached_input_tokens > 0  # GLM dialect
    assert result.cost_usd == pytest.approx(pricing.cost_usd(model, result.usage))
    assert result.time_to_first_chunk_s is not None
    assert 0.15 <= result.time_to_first_chunk_s <= result.latency_s

    [span] = telemetry.genai_spans()
    assert span.attributes[names.GEN_AI_PROVIDER_NAME] == "z_ai"
    assert span.attributes[names.GEN_AI_REQUEST_STREAM] is True
    assert span.attributes[names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(
        result.time_to_first_chunk_s)
    assert span.attributes[names.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.input_tokens
    [(_, ttfc)] = telemetry.labelled_points(names.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 1 and ttfc.sum >= 0.15
    assert (await fake.stats())["completed"] == 1


async def test_streaming_kimi_usage_from_the_choice(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("moonshot-v1-8k")
    result = await provider.chat(_request(model, stream=True))
    assert provider.key == "kimi"
    assert result.usage is not None and result.usage.cached_input_tokens > 0
    assert telemetry.genai_spans()[0].attributes[
        names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == result.usage.cached_input_tokens


async def test_tiny_max_tokens_finishes_with_length(fake: FakeUpstream, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.6")
    request = ChatRequest(model=model, messages=MESSAGES, max_tokens=3, stream=True)
    result = await provider.chat(request)
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.output_tokens == 3


async def test_unknown_model_is_unpriced_and_labelled_other(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("kimi-k9-from-the-future")
    assert model == "kimi-k9-from-the-future"  # a Kimi name is kept, even if unpriced
    result = await provider.chat(_request(model))

    assert result.usage is not None and result.usage.input_tokens > 0
    assert result.cost_usd is None  # unknown, never $0
    [span] = telemetry.genai_spans()
    assert names.GEN_AI_USAGE_COST not in span.attributes
    assert span.attributes[names.GEN_AI_REQUEST_MODEL] == model  # spans keep the real name
    [(uattrs, unpriced)] = telemetry.labelled_points(names.EXAI_GEN_AI_UNPRICED_CALLS)
    assert unpriced.value == 1
    assert uattrs[names.GEN_AI_REQUEST_MODEL] == names.OTHER_VALUE
    assert uattrs[names.GEN_AI_RESPONSE_MODEL] == names.OTHER_VALUE
    assert telemetry.labelled_points(names.EXAI_GEN_AI_COST) == []
    for attrs, _ in telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION):
        assert model not in attrs.values()
    assert model not in telemetry.metrics_json()


async def test_free_model_records_a_zero_cost_not_unpriced(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("auto")
    assert model == "glm-4.5-flash"
    result = await provider.chat(_request(model))
    assert result.cost_usd == 0.0
    assert telemetry.genai_spans()[0].attributes[names.GEN_AI_USAGE_COST] == 0.0
    assert telemetry.labelled_points(names.EXAI_GEN_AI_UNPRICED_CALLS) == []
    [(_, cost)] = telemetry.labelled_points(names.EXAI_GEN_AI_COST)
    assert cost.value == 0.0


async def test_429_with_retry_after_is_waited_out_then_succeeds(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.fault(429, count=1, retry_after=3)
    sleep = SleepRecorder()
    registry = make_registry(settings_for(fake), sleep=sleep)
    provider, model = registry.resolve("glm-4.5")
    result = await provider.chat(_request(model))

    assert result.text
    assert sleep.calls == [3.0]  # exactly what Retry-After asked, not the jittered backoff
    stats = await fake.stats()
    assert (stats["received"], stats["failed"], stats["completed"]) == (2, 1, 1)
    [span] = telemetry.genai_spans()
    assert names.ERROR_TYPE not in span.attributes
    assert [e.name for e in span.events] == ["exai.gen_ai.retry"]
    assert provider.circuit_state == "closed"


async def test_retry_after_measured_in_real_time(fake: FakeUpstream, make_registry) -> None:
    await fake.fault(503, count=1, retry_after=0.3)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await provider.chat(_request(model, stream=True))
    assert loop.time() - started >= 0.3


async def test_retry_after_beyond_the_cap_fails_fast_with_the_hint(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.fault(429, count=1, retry_after=60)
    sleep = SleepRecorder()
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_RETRY_MAX_SECS=5), sleep=sleep)
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert (caught.value.code, caught.value.error_type) == (ErrorCode.PROVIDER_ERROR, "429")
    assert caught.value.retry_after == 60.0
    assert sleep.calls == []
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "429"
    assert span.status.status_code is StatusCode.ERROR


async def test_5xx_retries_with_jittered_backoff_then_gives_up(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.fault(500, count=10)
    sleep = SleepRecorder()
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RETRIES=2,
                                          EXAI_PROVIDER_RETRY_BASE_SECS=1.0), sleep=sleep)
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert caught.value.error_type == "500" and caught.value.code == ErrorCode.PROVIDER_ERROR
    assert len(sleep.calls) == 2
    assert 0 <= sleep.calls[0] <= 1.0 and 0 <= sleep.calls[1] <= 2.0
    assert (await fake.stats())["received"] == 3
    [(attrs, _)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert attrs[names.ERROR_TYPE] == "500"
    assert telemetry.labelled_points(names.GEN_AI_CLIENT_TOKEN_USAGE) == []


async def test_client_errors_are_not_retried_and_do_not_trip_the_circuit(
        fake: FakeUpstream, make_registry) -> None:
    await fake.fault(400, count=5)
    registry = make_registry(settings_for(fake, EXAI_CIRCUIT_FAILURE_THRESHOLD=1))
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert caught.value.error_type == "400"
    assert (await fake.stats())["received"] == 1
    assert provider.circuit_state == "closed"


async def test_connect_errors_are_retried_then_reported(telemetry: Telemetry,
                                                        make_registry) -> None:
    sleep = SleepRecorder()
    registry = make_registry(settings_for(None), sleep=sleep)  # nothing listens on port 9
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert (caught.value.code, caught.value.error_type) == (ErrorCode.PROVIDER_ERROR,
                                                            "connect_error")
    assert len(sleep.calls) == 2
    assert telemetry.genai_spans()[0].attributes[names.ERROR_TYPE] == "connect_error"


async def test_timeout(fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(latency_ms=1000)
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_TIMEOUT_SECS=0.2))
    provider, model = registry.resolve("glm-4.5")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert caught.value.error_type == "timeout"
    assert loop.time() - started < 0.9
    assert telemetry.genai_spans()[0].attributes[names.ERROR_TYPE] == "timeout"


async def test_timeout_waiting_for_the_first_streamed_chunk(fake: FakeUpstream,
                                                            make_registry) -> None:
    await fake.configure(ttft_ms=1000)
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_TIMEOUT_SECS=0.2))
    provider, model = registry.resolve("kimi-latest")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model, stream=True))
    assert caught.value.error_type == "timeout"
    stats = await fake.wait_for("streams_aborted", 1)
    assert stats["streams_aborted"] == 1


async def test_no_api_key_is_provider_unavailable_without_calling_upstream(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake, KIMI_API_KEY=""))
    provider, model = registry.resolve("kimi-k2-turbo-preview")
    assert provider.configured is False
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert (caught.value.code, caught.value.error_type) == (ErrorCode.PROVIDER_UNAVAILABLE,
                                                            "no_api_key")
    assert (await fake.stats())["received"] == 0
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "no_api_key"
    assert registry.resolve("glm-4.5")[0].configured is True


async def test_repeated_500s_open_the_circuit_then_half_open_recovery(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    from .conftest import ManualClock

    clock = ManualClock()
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RETRIES=0,
                                          EXAI_CIRCUIT_FAILURE_THRESHOLD=2,
                                          EXAI_CIRCUIT_RESET_SECS=30), clock=clock)
    provider, model = registry.resolve("glm-4.5")

    def gauge() -> dict[str, float]:
        return {a[names.GEN_AI_PROVIDER_NAME]: p.value
                for a, p in telemetry.labelled_points(names.EXAI_CIRCUIT_BREAKER_STATE)}

    assert gauge() == {"moonshot_ai": 0, "z_ai": 0}
    await fake.fault(500, count=2)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            await provider.chat(_request(model))
        assert caught.value.error_type == "500"
    assert provider.circuit_state == "open"
    assert gauge() == {"moonshot_ai": 0, "z_ai": names.CIRCUIT_STATE_VALUES["open"]}

    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert (caught.value.code, caught.value.error_type) == (ErrorCode.PROVIDER_UNAVAILABLE,
                                                            "circuit_open")
    assert caught.value.retry_after == pytest.approx(30)
    assert (await fake.stats())["received"] == 2  # the upstream was not called
    kimi, _ = registry.resolve("kimi-latest")
    assert kimi.circuit_state == "closed"  # per provider

    clock.now += 30
    assert provider.circuit_state == "half_open"
    assert gauge()["z_ai"] == names.CIRCUIT_STATE_VALUES["half_open"]
    result = await provider.chat(_request(model))
    assert result.text
    assert provider.circuit_state == "closed"
    assert gauge()["z_ai"] == 0
    error_types = [s.attributes.get(names.ERROR_TYPE) for s in telemetry.genai_spans()]
    assert error_types == ["500", "500", "circuit_open", None]


async def test_failed_half_open_probe_reopens(fake: FakeUpstream, make_registry) -> None:
    from .conftest import ManualClock

    clock = ManualClock()
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RETRIES=0,
                                          EXAI_CIRCUIT_FAILURE_THRESHOLD=1,
                                          EXAI_CIRCUIT_RESET_SECS=10), clock=clock)
    provider, model = registry.resolve("glm-4.5")
    await fake.fault(503, count=2)
    with pytest.raises(ProviderError):
        await provider.chat(_request(model))
    clock.now += 10
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model))
    assert caught.value.error_type == "503"
    assert provider.circuit_state == "open"


async def test_cancel_mid_stream_closes_the_upstream_stream_and_ends_the_span(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(chunk_delay_ms=200)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("kimi-k2-0905-preview")
    first = asyncio.Event()

    async def on_chunk(_text: str) -> None:
        first.set()

    task = asyncio.create_task(provider.chat(_request(model, stream=True), on_chunk))
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = await fake.wait_for("streams_aborted", 1)
    assert stats["streams_aborted"] == 1 and stats["completed"] == 0
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "cancelled"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    [(attrs, _)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert attrs[names.ERROR_TYPE] == "cancelled"
    assert provider.circuit_state == "closed" and provider.breaker.consecutive_failures == 0


async def test_cancel_by_timeout_before_the_answer(fake: FakeUpstream, telemetry: Telemetry,
                                                    make_registry) -> None:
    await fake.configure(latency_ms=2000)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(provider.chat(_request(model)), 0.2)
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "cancelled"


class ConsumerGone(Exception):
    pass


async def test_consumer_disconnect_mid_stream_closes_the_stream_and_ends_the_span_once(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(chunk_delay_ms=100)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5-air")

    async def on_chunk(_text: str) -> None:
        raise ConsumerGone

    with pytest.raises(ConsumerGone):
        await provider.chat(_request(model, stream=True), on_chunk)
    stats = await fake.wait_for("streams_aborted", 1)
    assert stats["streams_aborted"] == 1
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE].endswith("ConsumerGone")
    assert provider.circuit_state == "closed" and provider.breaker.consecutive_failures == 0


async def test_httpx_span_is_a_child_of_the_genai_span(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    registry = make_registry(settings_for(fake))
    HTTPXClientInstrumentor.instrument_client(registry.client,
                                              tracer_provider=telemetry.tracer_provider,
                                              meter_provider=telemetry.meter_provider)
    provider, model = registry.resolve("glm-4.5")
    await provider.chat(_request(model, stream=True))
    await provider.chat(_request(model))

    genai_spans = telemetry.genai_spans()
    http_spans = [s for s in telemetry.finished() if s.kind is SpanKind.CLIENT
                  and not s.name.startswith("chat ")]
    assert len(genai_spans) == 2 and len(http_spans) == 2
    for genai_span, http_span in zip(genai_spans, http_spans, strict=True):
        assert http_span.parent is not None
        assert http_span.parent.span_id == genai_span.context.span_id
        assert http_span.context.trace_id == genai_span.context.trace_id
    assert API_KEY not in telemetry.spans_json()


async def test_no_content_and_no_key_in_telemetry_by_default(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, monkeypatch) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    registry = make_registry(settings_for(fake))
    HTTPXClientInstrumentor.instrument_client(registry.client,
                                              tracer_provider=telemetry.tracer_provider,
                                              meter_provider=telemetry.meter_provider)
    answers = []
    for model, stream in (("kimi-k2-0905-preview", True), ("glm-4.5", False)):
        provider, _ = registry.resolve(model)
        answers.append((await provider.chat(_request(model, stream=stream))).text)
    await fake.fault(500, count=5)
    with pytest.raises(ProviderError) as caught:
        await registry.resolve("glm-4.5")[0].chat(_request("glm-4.5"))

    exported = telemetry.spans_json() + telemetry.metrics_json()
    for secret in (API_KEY, "PROMPT-CANARY", "SYSTEM-CANARY", *answers):
        assert secret not in exported
    assert API_KEY not in str(caught.value) and API_KEY not in repr(registry.providers)
    assert API_KEY not in str(registry.list_models())
    for span in telemetry.genai_spans():
        assert names.GEN_AI_INPUT_MESSAGES not in span.attributes
        assert names.GEN_AI_OUTPUT_MESSAGES not in span.attributes


@pytest.mark.parametrize("value", ["SPAN_ONLY", "span_and_event", "true"])
async def test_content_is_captured_only_when_opted_in(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, monkeypatch, value: str) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    result = await provider.chat(_request(model, stream=True))
    [span] = telemetry.genai_spans()
    assert PROMPT in span.attributes[names.GEN_AI_INPUT_MESSAGES]
    assert "SYSTEM-CANARY" in span.attributes[names.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert "SYSTEM-CANARY" not in span.attributes[names.GEN_AI_INPUT_MESSAGES]
    assert result.text in span.attributes[names.GEN_AI_OUTPUT_MESSAGES]
    assert API_KEY not in telemetry.spans_json()
    assert PROMPT not in telemetry.metrics_json()


async def test_event_only_capture_puts_nothing_on_spans(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY")
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    await provider.chat(_request(model))
    assert "PROMPT-CANARY" not in telemetry.spans_json()
