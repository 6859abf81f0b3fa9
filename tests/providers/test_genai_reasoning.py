"""Thinking models against the fake upstream over loopback: reasoning tokens counted (span,
metrics, cost, the chat reply), reasoning text kept out of the answer and out of telemetry unless
content capture is on, and the time between streamed output chunks measured."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from app import pricing
from app.fake_llm import answer_for, reasoning_for
from app.providers.base import ChatRequest
from app.tools.base import CallContext
from app.tools.chat import ChatArguments
from otel import genai, names
from otel.logs import bridge_handler

from .conftest import FakeUpstream, Telemetry, call_context, settings_for

MESSAGES = [{"role": "user", "content": "PROMPT-CANARY-91c2: is 91 prime?"}]
REASONING_TOKENS = 12  # three streamed pieces of four words
ANSWER = " ".join(answer_for(MESSAGES, 256)[0])
REASONING = " ".join(reasoning_for(MESSAGES, REASONING_TOKENS))
CHUNK_DELAY_S = 0.02


def _request(model: str, stream: bool) -> ChatRequest:
    return ChatRequest(model=model, messages=MESSAGES, max_tokens=256, stream=stream)


class Chunks(list[str]):
    async def __call__(self, text: str) -> None:
        self.append(text)


@pytest.fixture
def exported_logs() -> Iterator[InMemoryLogRecordExporter]:
    """Every log record of the test, at any level, through the daemon's own OTel logs bridge."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = bridge_handler(provider)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield exporter
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        provider.shutdown()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, provider_name", [("glm-4.6", "z_ai"),
                                                  ("kimi-k2-0905-preview", "moonshot_ai")])
async def test_reasoning_tokens_are_counted_as_output_on_the_span_metrics_and_cost(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, stream: bool, model: str,
        provider_name: str) -> None:
    await fake.configure(reasoning_tokens=REASONING_TOKENS)
    registry = make_registry(settings_for(fake))
    provider, _ = registry.resolve(model)
    chunks = Chunks()
    result = await provider.chat(_request(model, stream), chunks)

    answer_tokens = len(answer_for(MESSAGES, 256)[0])
    assert result.text == ANSWER and "".join(chunks) == (ANSWER if stream else "")
    assert result.usage is not None
    assert result.usage.reasoning_output_tokens == REASONING_TOKENS
    assert result.usage.output_tokens == answer_tokens + REASONING_TOKENS  # reasoning inside
    price = pricing.price_for(model)
    assert price is not None
    fresh = result.usage.input_tokens - result.usage.cached_input_tokens
    assert result.cost_usd == pytest.approx(
        (fresh * price.input_per_mtok + result.usage.cached_input_tokens
         * price.cached_input_per_mtok + result.usage.output_tokens * price.output_per_mtok) / 1e6)

    [span] = telemetry.genai_spans()
    assert span.attributes[names.GEN_AI_PROVIDER_NAME] == provider_name
    assert span.attributes[names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == REASONING_TOKENS
    assert span.attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS] == result.usage.output_tokens
    assert span.attributes[names.GEN_AI_USAGE_COST] == pytest.approx(result.cost_usd)
    tokens = {a[names.GEN_AI_TOKEN_TYPE]: p.sum
              for a, p in telemetry.labelled_points(names.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}
    [(duration_attrs, _)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    [(attrs, reasoning)] = telemetry.labelled_points(names.EXAI_GEN_AI_REASONING_OUTPUT_TOKENS)
    assert reasoning.value == REASONING_TOKENS and attrs == duration_attrs


async def test_without_reasoning_nothing_is_invented(fake: FakeUpstream, telemetry: Telemetry,
                                                     make_registry) -> None:
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    result = await provider.chat(_request(model, True))
    assert result.usage is not None and result.usage.reasoning_output_tokens is None
    [span] = telemetry.genai_spans()
    assert names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS not in span.attributes
    assert telemetry.labelled_points(names.EXAI_GEN_AI_REASONING_OUTPUT_TOKENS) == []


def _everything(telemetry: Telemetry, logs: InMemoryLogRecordExporter) -> str:
    return "\n".join([telemetry.spans_json(), telemetry.metrics_json(),
                      *(record.to_json() for record in logs.get_finished_logs())])


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_text_reaches_no_span_metric_or_log_without_content_capture(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, exported_logs, monkeypatch,
        stream: bool) -> None:
    monkeypatch.delenv(genai.CAPTURE_CONTENT_ENV, raising=False)
    await fake.configure(reasoning_tokens=REASONING_TOKENS)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.6")
    result = await provider.chat(_request(model, stream))
    logging.getLogger("tests").info("after the call")  # the capture works: this one is there

    assert result.usage is not None and result.usage.reasoning_output_tokens == REASONING_TOKENS
    exported = _everything(telemetry, exported_logs)
    assert "after the call" in exported
    assert REASONING not in exported
    for word in REASONING.split()[:2]:  # "Reasoning <digest>:" opens no answer, prompt or name
        assert word not in exported
    [span] = telemetry.genai_spans()
    assert names.GEN_AI_OUTPUT_MESSAGES not in span.attributes and not span.events


@pytest.mark.parametrize("stream", [False, True])
async def test_with_content_capture_reasoning_is_a_reasoning_part_of_the_output_messages(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, exported_logs, monkeypatch,
        stream: bool) -> None:
    monkeypatch.setenv(genai.CAPTURE_CONTENT_ENV, "SPAN_AND_EVENT")
    await fake.configure(reasoning_tokens=REASONING_TOKENS)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.6")
    chunks = Chunks()
    result = await provider.chat(_request(model, stream), chunks)

    assert REASONING not in result.text and REASONING not in "".join(chunks)
    [span] = telemetry.genai_spans()
    assert json.loads(span.attributes[names.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "finish_reason": "stop",
         "parts": [{"type": "reasoning", "content": REASONING},
                   {"type": "text", "content": ANSWER}]}]
    assert telemetry.spans_json().count(REASONING) == 1  # that attribute, nowhere else
    assert not span.events
    assert REASONING not in telemetry.metrics_json()
    assert all(REASONING not in r.to_json() for r in exported_logs.get_finished_logs())


@pytest.mark.parametrize("stream", [False, True])
async def test_the_chat_reply_reports_reasoning_tokens_and_answers_without_the_reasoning(
        fake: FakeUpstream, make_chat_tool, stream: bool) -> None:
    tool, threads, _ = make_chat_tool()
    plain = await tool.run(ChatArguments(prompt="hello", stream=stream), call_context())
    assert plain.metadata["usage"]["reasoning_tokens"] is None  # not reported: null, not 0

    await fake.configure(reasoning_tokens=REASONING_TOKENS)
    streamed = Chunks()
    ctx = CallContext("r-2", "s-1", "0" * 32, progress=Chunks(), stream_chunk=streamed)
    reply = await tool.run(ChatArguments(prompt="hello", model="glm-4.6", stream=stream), ctx)
    usage = reply.metadata["usage"]
    assert usage["reasoning_tokens"] == REASONING_TOKENS
    assert usage["output_tokens"] == REASONING_TOKENS + len(
        answer_for([{"role": "user", "content": "hello"}], None)[0])
    assert "Reasoning" not in reply.text and "Reasoning" not in "".join(streamed)
    stored = await threads.load(reply.metadata["continuation_id"])
    assert [t.content for t in stored] == ["hello", reply.text]


# --- time per output chunk --------------------------------------------------------------------

async def test_time_per_output_chunk_is_measured_between_streamed_output_chunks(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(reasoning_tokens=REASONING_TOKENS, chunk_delay_ms=CHUNK_DELAY_S * 1000)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.6")
    chunks = Chunks()
    await provider.chat(_request(model, True), chunks)

    output_chunks = REASONING_TOKENS // 4 + len(chunks)  # reasoning pieces, then the answer's
    [(attrs, point)] = telemetry.labelled_points(names.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert point.count == output_chunks - 1  # one measurement per output chunk after the first
    assert point.min >= CHUNK_DELAY_S * 0.75 and point.sum < 5
    assert tuple(point.explicit_bounds) == names.GEN_AI_DURATION_BUCKETS
    [(duration_attrs, _)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert attrs == duration_attrs == {
        names.GEN_AI_OPERATION_NAME: "chat", names.GEN_AI_PROVIDER_NAME: "z_ai",
        names.GEN_AI_REQUEST_MODEL: model, names.GEN_AI_RESPONSE_MODEL: model}
    assert names.METRICS[names.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK].unit == "s"


async def test_time_per_output_chunk_is_not_recorded_for_answers_that_are_not_streamed(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.configure(reasoning_tokens=REASONING_TOKENS, answer_bytes=200_000)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("kimi-k2-0905-preview")
    await provider.chat(_request(model, False))
    assert telemetry.labelled_points(names.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK) == []
    assert len(telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)) == 1
