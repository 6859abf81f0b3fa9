"""Decoding SSE streams and usage in both providers' dialects."""

from __future__ import annotations

import json

import pytest

from app.providers import sse
from app.providers.base import Usage


def test_decoder_joins_data_lines_skips_comments_and_other_fields() -> None:
    lines = [": keep-alive", "event: message", "id: 1", "data: {\"a\":", "data:1}", "",
             "data: [DONE]", "", "data: trailing"]
    assert list(sse.iter_events(lines)) == ['{"a":\n1}', "[DONE]", "trailing"]


def test_decoder_handles_crlf_and_blank_runs() -> None:
    decoder = sse.SSEDecoder()
    assert decoder.feed("data: x\r\n") is None
    assert decoder.feed("\r\n") == "x"
    assert decoder.feed("") is None
    assert decoder.close() is None


def test_kimi_usage_inside_the_choice_with_cached_tokens() -> None:
    chunk = sse.parse_chunk(json.dumps({
        "id": "c1", "model": "kimi-k2-0905-preview",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                     "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                               "total_tokens": 120, "cached_tokens": 64}}]}))
    assert chunk.finish_reason == "stop"
    assert chunk.usage == Usage(input_tokens=100, output_tokens=20, cached_input_tokens=64)


def test_openai_style_final_usage_chunk_with_prompt_tokens_details() -> None:
    chunk = sse.parse_chunk(json.dumps({
        "id": "c2", "model": "glm-4.5", "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 5,
                  "prompt_tokens_details": {"cached_tokens": 10}}}))
    assert chunk.text == ""
    assert chunk.usage == Usage(50, 5, 10)


def test_accumulator_keeps_text_and_last_metadata() -> None:
    acc = sse.StreamAccumulator()
    for data in ('{"id":"x","model":"m","choices":[{"delta":{"role":"assistant","content":""}}]}',
                 '{"id":"x","model":"m","choices":[{"delta":{"content":"Hel"}}]}',
                 '{"id":"x","model":"m","choices":[{"delta":{"content":"lo"},"finish_reason":"length"}]}'):
        acc.add(sse.parse_chunk(data))
    assert (acc.text, acc.finish_reason, acc.response_id, acc.model) == ("Hello", "length", "x", "m")
    assert acc.usage is None and acc.complete


def test_missing_usage_is_none_not_zero() -> None:
    assert sse.parse_usage(None) is None
    assert sse.parse_usage({}) is None
    assert sse.parse_usage({"prompt_tokens": 3}) == Usage(3, 0, 0)


def test_non_streamed_completion() -> None:
    done = sse.parse_completion(json.dumps({
        "id": "r", "model": "glm-4.6",
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1}}))
    assert (done.text, done.finish_reason, done.usage) == ("hi", "stop", Usage(4, 1, 0))


@pytest.mark.parametrize("body", ["not json", "[]", '{"choices": []}', '{"choices": [{}]}',
                                  '{"choices": [{"message": {"content": 5}}]}'])
def test_malformed_completions_are_rejected(body: str) -> None:
    with pytest.raises(sse.ResponseFormatError):
        sse.parse_completion(body)


def test_error_event_in_stream_is_its_own_error() -> None:
    with pytest.raises(sse.StreamErrorEvent):
        sse.parse_chunk('{"error": {"message": "overloaded"}}')
