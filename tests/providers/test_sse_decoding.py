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
                 '{"id":"x","model":"m","choices":[{"delta":{"content":"lo"},'
                 '"finish_reason":"length"}]}'):
        acc.add(sse.parse_chunk(data))
    assert (acc.text, acc.finish_reason, acc.response_id, acc.model) == (
        "Hello", "length", "x", "m")
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


# --- splitting the raw body into lines --------------------------------------------------------

# SSE lines end at CR, LF or CRLF only; everything str.splitlines() also breaks on stays inside.
INSIDE = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c"
BODY = (f'data: {{"t": "a{INSIDE}b"}}\r\n\r\n: comment\rdata: é€😀\n\ndata: x\r\r'
        "data: last").encode()
LINES = [f'data: {{"t": "a{INSIDE}b"}}', "", ": comment", "data: é€😀", "", "data: x", "",
         "data: last"]


def _split(chunks: list[bytes], max_line_bytes: int = 1024) -> list[str]:
    splitter = sse.LineSplitter(max_line_bytes)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return lines + splitter.close()


def test_splitter_ends_lines_at_cr_lf_and_crlf_only() -> None:
    assert _split([BODY]) == LINES
    assert _split([b"a\nb\r\nc\rd\n"]) == ["a", "b", "c", "d"]
    assert _split([b"\n\r\n\r"]) == ["", "", ""]
    assert _split([]) == [] and _split([b""]) == []


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_splitter_gives_the_same_lines_wherever_the_chunks_break(cut: int) -> None:
    assert _split([BODY[:cut], BODY[cut:]]) == LINES
    assert _split([BODY[:cut], b"", BODY[cut:cut + 3], BODY[cut + 3:]]) == LINES


def test_splitter_one_byte_at_a_time() -> None:
    assert _split([BODY[i:i + 1] for i in range(len(BODY))]) == LINES


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert _split([b"a\r", b"\nb\n"]) == ["a", "b"]
    assert _split([b"a\r", b"", b"\n", b"b"]) == ["a", "b"]
    assert _split([b"a\r", b"b"]) == ["a", "b"]
    assert _split([b"a\r", b"\r\n"]) == ["a", ""]
    assert _split([b"a\r"]) == ["a"]


def test_separators_inside_data_reach_the_decoder_whole() -> None:
    payload = json.dumps({"choices": [{"delta": {"content": f"x{INSIDE}y"}}]},
                         ensure_ascii=False)
    body = f"data: {payload}\n\ndata: [DONE]\n\n".encode()
    events = list(sse.iter_events(_split([body[i:i + 7] for i in range(0, len(body), 7)])))
    assert events == [payload, "[DONE]"]
    assert sse.parse_chunk(events[0]).text == f"x{INSIDE}y"


def test_a_character_cut_between_chunks_decodes_whole() -> None:
    euro = "€".encode()
    assert _split([b"data: " + euro[:1], euro[1:2], euro[2:] + b"\n"]) == ["data: €"]


@pytest.mark.parametrize("body", [b"data: \xff\n", b"data: \xe2\x82\n", b"\xed\xa0\x80\n"])
def test_a_line_that_is_not_utf8_is_a_format_error(body: bytes) -> None:
    with pytest.raises(sse.ResponseFormatError):
        _split([body])


def test_an_unterminated_last_line_that_is_not_utf8_is_a_format_error() -> None:
    with pytest.raises(sse.ResponseFormatError):
        _split([b"data: ok\ndata: \xff"])


def test_lines_are_bounded_without_waiting_for_their_end() -> None:
    assert _split([b"x" * 8 + b"\n"], max_line_bytes=8) == ["x" * 8]
    with pytest.raises(sse.ResponseTooLarge) as caught:
        _split([b"x" * 9 + b"\n"], max_line_bytes=8)
    assert caught.value.limit == 8
    splitter = sse.LineSplitter(8)
    assert splitter.feed(b"x" * 5) == []
    with pytest.raises(sse.ResponseTooLarge):
        splitter.feed(b"x" * 4)  # no line end yet: refused as it grows, not when it ends
    assert _split([b"x" * 8 + b"\n" + b"y" * 8 + b"\r"], max_line_bytes=8) == ["x" * 8, "y" * 8]


# --- reasoning (thinking models) --------------------------------------------------------------

@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 10, "completion_tokens": 30, "cached_tokens": 4,  # Kimi
     "completion_tokens_details": {"reasoning_tokens": 20}},
    {"prompt_tokens": 10, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 4},
     "completion_tokens_details": {"reasoning_tokens": 20}},  # GLM, OpenAI
])
def test_reasoning_tokens_are_read_as_part_of_the_output(usage: dict) -> None:
    assert sse.parse_usage(usage) == Usage(10, 30, 4, reasoning_output_tokens=20)


def test_reasoning_tokens_not_reported_are_none_and_never_exceed_the_output() -> None:
    assert sse.parse_usage({"prompt_tokens": 1, "completion_tokens": 2}).reasoning_output_tokens \
        is None
    assert sse.parse_usage({"prompt_tokens": 1, "completion_tokens": 2,
                            "completion_tokens_details": {"reasoning_tokens": 0}}
                           ).reasoning_output_tokens == 0
    assert sse.parse_usage({"prompt_tokens": 1, "completion_tokens": 2,
                            "completion_tokens_details": {"reasoning_tokens": 9}}
                           ).reasoning_output_tokens == 2
    for odd in ({"reasoning_tokens": "many"}, {"reasoning_tokens": True}, "details", None):
        assert sse.parse_usage({"prompt_tokens": 1, "completion_tokens": 2,
                                "completion_tokens_details": odd}).reasoning_output_tokens is None


REASONING_CHUNK = '{"choices":[{"delta":{"reasoning_content":"let me think"}}]}'


def test_a_reasoning_delta_is_output_but_never_answer_text() -> None:
    chunk = sse.parse_chunk(REASONING_CHUNK)
    assert (chunk.text, chunk.reasoning, chunk.carries_output) == ("", "let me think", True)
    assert not sse.parse_chunk('{"choices":[{"delta":{"role":"assistant","content":""}}]}'
                               ).carries_output
    assert not sse.parse_chunk('{"choices":[{"delta":{"reasoning_content":7}}]}').carries_output


@pytest.mark.parametrize("keep", [False, True])
def test_the_accumulator_keeps_reasoning_apart_and_only_when_asked(keep: bool) -> None:
    acc = sse.StreamAccumulator(keep_reasoning=keep)
    answer = '{"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}]}'
    for data in (REASONING_CHUNK, answer):
        acc.add(sse.parse_chunk(data))
    assert acc.text == "Hi"
    assert acc.reasoning == ("let me think" if keep else "")
    assert sse.StreamAccumulator().reasoning_parts == []


def test_non_streamed_reasoning_content_is_kept_apart_from_the_text() -> None:
    done = sse.parse_completion(json.dumps({
        "choices": [{"message": {"content": "42", "reasoning_content": "6 times 7"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 9,
                  "completion_tokens_details": {"reasoning_tokens": 8}}}))
    assert (done.text, done.reasoning) == ("42", "6 times 7")
    assert done.usage == Usage(4, 9, 0, 8)
    odd = sse.parse_completion(
        '{"choices": [{"message": {"content": "a", "reasoning_content": 1}}]}')
    assert (odd.text, odd.reasoning) == ("a", "")
