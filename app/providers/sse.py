"""Decoding OpenAI-style chat-completions responses: SSE events, chunks and usage. No I/O here.

The providers differ in small ways this module absorbs:
- usage arrives in a final chunk (``stream_options.include_usage``), either at the top level
  (OpenAI, GLM) or inside ``choices[0].usage`` (Kimi);
- cache hits are ``usage.cached_tokens`` (Kimi) or ``usage.prompt_tokens_details.cached_tokens``
  (OpenAI, GLM), and in both cases are already counted inside ``prompt_tokens``;
- thinking models (GLM-4.5/4.6, Kimi's thinking models) report
  ``usage.completion_tokens_details.reasoning_tokens``, already counted inside
  ``completion_tokens``, and stream their reasoning as ``delta.reasoning_content``
  (``message.reasoning_content`` when not streamed). That text is kept apart from the answer's:
  it is never part of ``text``.

Lines of an event stream are split here, on bytes, by the SSE rule: a line ends at CR, LF or CRLF
and nowhere else. ``str.splitlines`` (what ``httpx``'s ``aiter_lines`` uses) also breaks at
U+2028, U+2029, U+0085 and a few ASCII controls, which JSON strings may hold raw, and so would cut
a valid event in half.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ExaiError
from .base import Usage

DONE = "[DONE]"


class ResponseFormatError(ExaiError, ValueError):
    """The upstream sent something that is not a chat-completions response."""


class StreamErrorEvent(ResponseFormatError):
    """The upstream reported an error inside the stream (``{"error": {...}}`` as a chunk)."""


class ResponseTooLarge(ExaiError):
    """The upstream sent more than ``limit`` bytes (an answer, or one line of a stream)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


_LINE_END = re.compile(rb"\r\n|\r|\n")


class LineSplitter:
    """Splits the bytes of an event stream into lines, whatever the chunk boundaries.

    A CR ending one chunk may be the first half of a CRLF: the LF that may start the next chunk is
    then skipped, not taken for an empty line. Each line is decoded as UTF-8 once whole, so a
    character cut between chunks is fine. A line may not grow past ``max_line_bytes``: it is
    refused as it grows, not when (if ever) it ends.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that ``chunk`` completes, without their line endings."""
        if not chunk:
            return []
        start = 1 if self._after_cr and chunk.startswith(b"\n") else 0
        self._after_cr = chunk.endswith(b"\r")
        lines = []
        for end in _LINE_END.finditer(chunk, start):
            self._extend(chunk, start, end.start())
            lines.append(self._take())
            start = end.end()
        self._extend(chunk, start, len(chunk))
        return lines

    def close(self) -> list[str]:
        """End of the body: the last line if it had no line ending."""
        return [self._take()] if self._partial else []

    def _extend(self, chunk: bytes, start: int, end: int) -> None:
        if len(self._partial) + end - start > self._max:
            raise ResponseTooLarge(self._max)
        self._partial += chunk[start:end]

    def _take(self) -> str:
        try:
            line = self._partial.decode("utf-8")
        except UnicodeDecodeError:
            raise ResponseFormatError("a line of the stream is not UTF-8") from None
        self._partial.clear()
        return line


class SSEDecoder:
    """Turns the lines of a ``text/event-stream`` body into the data payload of each event.

    Follows the SSE rules the providers rely on: ``data:`` lines (one optional space after the
    colon) are joined with newlines, a blank line ends an event, ``:`` lines are comments and other
    fields (``event:``, ``id:``, ``retry:``) are ignored.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Feed one line (without its line ending); return an event's data when one completes."""
        line = line.rstrip("\r\n")
        if not line:
            return self._flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def close(self) -> str | None:
        """End of stream: return the last event if the body did not end with a blank line."""
        return self._flush()

    def _flush(self) -> str | None:
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


def iter_events(lines: Iterable[str]) -> Iterator[str]:
    """The data payloads of all events in ``lines`` (handy for tests and small bodies)."""
    decoder = SSEDecoder()
    for line in lines:
        data = decoder.feed(line)
        if data is not None:
            yield data
    data = decoder.close()
    if data is not None:
        yield data


@dataclass(frozen=True)
class Chunk:
    """What one streamed chunk contributes to the answer."""

    text: str = ""
    finish_reason: str | None = None
    response_id: str | None = None
    model: str | None = None
    usage: Usage | None = None
    reasoning: str = ""  # a reasoning_content delta: never part of the answer's text

    @property
    def carries_output(self) -> bool:
        """Whether the chunk holds generated output (answer or reasoning text), not just
        a role, a finish reason or usage."""
        return bool(self.text or self.reasoning)


@dataclass(frozen=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    finish_reason: str | None
    response_id: str | None
    model: str | None
    usage: Usage | None
    reasoning: str = ""  # message.reasoning_content: never part of the answer's text


def parse_usage(raw: Any) -> Usage | None:
    """Usage from an OpenAI-style ``usage`` object, or None when there is none."""
    if not isinstance(raw, Mapping):
        return None
    prompt = _count(raw.get("prompt_tokens"))
    completion = _count(raw.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    cached = _count(raw.get("cached_tokens"))
    if cached is None:
        cached = _detail(raw, "prompt_tokens_details", "cached_tokens")
    reasoning = _detail(raw, "completion_tokens_details", "reasoning_tokens")
    prompt = prompt or 0
    completion = completion or 0
    return Usage(input_tokens=prompt, output_tokens=completion,
                 cached_input_tokens=min(cached or 0, prompt),
                 reasoning_output_tokens=None if reasoning is None else min(reasoning, completion))


def parse_chunk(data: str) -> Chunk:
    """Decode one SSE data payload (not ``[DONE]``) into a :class:`Chunk`."""
    obj = _load_object(data)
    if "error" in obj:
        raise StreamErrorEvent("the stream carried an error event")
    choices = obj.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise ResponseFormatError("'choices' is not a list")
    text = reasoning = ""
    finish_reason = None
    usage = parse_usage(obj.get("usage"))
    if choices:
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise ResponseFormatError("a choice is not an object")
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            text = _text_or_empty(delta.get("content"))
            reasoning = _text_or_empty(delta.get("reasoning_content"))
        finish_reason = _str_or_none(choice.get("finish_reason"))
        if usage is None:  # Kimi: usage inside the last choice
            usage = parse_usage(choice.get("usage"))
    return Chunk(text=text, finish_reason=finish_reason, response_id=_str_or_none(obj.get("id")),
                 model=_str_or_none(obj.get("model")), usage=usage, reasoning=reasoning)


def parse_completion(body: bytes | str) -> Completion:
    """Decode a non-streamed chat-completions response body."""
    obj = _load_object(body)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ResponseFormatError("the response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ResponseFormatError("the first choice has no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ResponseFormatError("the message content is not text")
    usage = parse_usage(obj.get("usage")) or parse_usage(choice.get("usage"))
    return Completion(text=content or "", finish_reason=_str_or_none(choice.get("finish_reason")),
                      response_id=_str_or_none(obj.get("id")), model=_str_or_none(obj.get("model")),
                      usage=usage, reasoning=_text_or_empty(message.get("reasoning_content")))


class StreamAccumulator:
    """Collects chunks into the final answer; keeps the last id, model, finish reason and usage.

    Reasoning deltas are kept (apart from the answer) only when ``keep_reasoning`` is set, that is
    when content capture is on; otherwise they are dropped as they arrive.
    """

    def __init__(self, keep_reasoning: bool = False) -> None:
        self.parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.usage: Usage | None = None
        self.done = False
        self._keep_reasoning = keep_reasoning

    def add(self, chunk: Chunk) -> None:
        if chunk.text:
            self.parts.append(chunk.text)
        if chunk.reasoning and self._keep_reasoning:
            self.reasoning_parts.append(chunk.reasoning)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.response_id = chunk.response_id or self.response_id
        self.model = chunk.model or self.model
        self.usage = chunk.usage or self.usage

    @property
    def complete(self) -> bool:
        """True once the stream said it was finished ([DONE] or a finish reason)."""
        return self.done or self.finish_reason is not None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning(self) -> str:
        """The reasoning text kept (empty unless ``keep_reasoning``)."""
        return "".join(self.reasoning_parts)


def _load_object(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResponseFormatError("the body is not JSON") from exc
    if not isinstance(obj, dict):
        raise ResponseFormatError("the body is not a JSON object")
    return obj


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(int(value), 0)


def _detail(usage: Mapping[str, Any], details: str, key: str) -> int | None:
    """A count inside one of usage's ``*_tokens_details`` objects, or None when absent."""
    inner = usage.get(details)
    return _count(inner.get(key)) if isinstance(inner, Mapping) else None


def _text_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
