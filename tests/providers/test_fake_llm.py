"""The fake upstream itself: routing, auth, dialects, faults and counters."""

from __future__ import annotations

import json

import httpx
import pytest

from app.fake_llm import SEPARATOR_TEXT, answer_for, content_pieces, reasoning_for

from .conftest import FakeUpstream

AUTH = {"Authorization": "Bearer test-key"}
BODY = {"model": "glm-4.5", "messages": [{"role": "user", "content": "ECHO-CANARY hello"}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/paas/v4/chat/completions",
                                  "/chat/completions"])
async def test_serves_any_path_ending_in_chat_completions(fake: FakeUpstream, path: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(fake.url(path), json=BODY, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "ECHO-CANARY" not in body["choices"][0]["message"]["content"]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0


async def test_answers_are_deterministic_and_routes_are_strict(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient() as client:
        first = await client.post(fake.url("/v1/chat/completions"), json=BODY, headers=AUTH)
        second = await client.post(fake.url("/v1/chat/completions"), json=BODY, headers=AUTH)
        wrong = await client.post(fake.url("/v1/completions"), json=BODY, headers=AUTH)
        get = await client.get(fake.url("/v1/chat/completions"), headers=AUTH)
    text = first.json()["choices"][0]["message"]["content"]
    assert text == second.json()["choices"][0]["message"]["content"]
    assert text == " ".join(answer_for(BODY["messages"], None)[0])
    assert first.json()["id"] != second.json()["id"]
    assert (wrong.status_code, get.status_code) == (404, 404)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
async def test_requires_a_bearer_token(fake: FakeUpstream, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(fake.url("/v1/chat/completions"), json=BODY, headers=headers)
    assert response.status_code == 401
    stats = await fake.stats()
    assert stats["unauthorized"] == 1 and stats["completed"] == 0


async def test_bad_body_is_400(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(fake.url("/v1/chat/completions"), content=b"{",
                                     headers=AUTH)
    assert response.status_code == 400


async def test_queued_faults_then_recovery(fake: FakeUpstream) -> None:
    await fake.fault(429, count=2, retry_after=4)
    await fake.fault(503, count=1)
    assert (await fake.stats())["faults_queued"] == 3
    async with httpx.AsyncClient() as client:
        answers = [await client.post(fake.url("/v1/chat/completions"), json=BODY, headers=AUTH)
                   for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 503, 200]
    assert answers[0].headers["Retry-After"] == "4"
    assert "Retry-After" not in answers[2].headers
    stats = await fake.stats()
    assert (stats["received"], stats["failed"], stats["completed"]) == (4, 3, 1)


async def test_error_rate_from_config(fake: FakeUpstream) -> None:
    await fake.configure(error_rate=1.0)
    async with httpx.AsyncClient() as client:
        statuses = {(await client.post(fake.url("/v1/chat/completions"), json=BODY,
                                       headers=AUTH)).status_code for _ in range(12)}
    assert statuses <= {429, 500} and statuses


async def _stream(fake: FakeUpstream, body: dict) -> list[dict | str]:
    events: list[dict | str] = []
    async with httpx.AsyncClient() as client:
        async with client.stream("POST", fake.url("/v1/chat/completions"), json=body,
                                 headers=AUTH) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_stream_openai_dialect_with_final_usage_chunk(fake: FakeUpstream) -> None:
    events = await _stream(fake, {**BODY, "stream": True,
                                  "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert len([e for e in events if isinstance(e, dict) and e["choices"]
                and e["choices"][0]["delta"].get("content")]) >= 3
    without = await _stream(fake, {**BODY, "stream": True})
    assert all("usage" not in e for e in without if isinstance(e, dict))


async def test_stream_kimi_dialect_usage_in_choice(fake: FakeUpstream) -> None:
    events = await _stream(fake, {**BODY, "model": "kimi-k2-0905-preview", "stream": True,
                                  "stream_options": {"include_usage": True}})
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["choices"][0]["usage"]["cached_tokens"] > 0
    assert "usage" not in last


async def test_tiny_max_tokens_gives_length(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(fake.url("/v1/chat/completions"),
                                     json={**BODY, "max_tokens": 2}, headers=AUTH)
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


async def _raw(fake: FakeUpstream, body: dict) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(fake.url("/v1/chat/completions"), json=body, headers=AUTH)


def _sse_payloads(raw: bytes) -> list[dict | str]:
    """The events of a body the fake wrote (its events are one ``data:`` line each)."""
    payloads = [block.removeprefix(b"data: ").decode() for block in raw.split(b"\n\n") if block]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def _streamed_text(events: list[dict | str]) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e["choices"])


async def test_answer_bytes_pads_json_and_sse_answers_written_in_pieces(fake: FakeUpstream) -> None:
    await fake.configure(answer_bytes=1_000_000)
    response = await _raw(fake, BODY)
    assert "content-length" not in response.headers  # written in pieces, not built whole
    text = response.json()["choices"][0]["message"]["content"]
    assert text.startswith(" ".join(answer_for(BODY["messages"], None)[0]))
    assert 1_000_000 <= len(text.encode()) < 1_000_000 + 100

    events = _sse_payloads((await _raw(fake, {**BODY, "stream": True})).content)
    assert events[-1] == "[DONE]" and len(events) > 60
    assert 1_000_000 <= len(_streamed_text(events).encode()) < 1_000_000 + 100
    stats = await fake.stats()
    assert (stats["streams_started"], stats["completed"], stats["streams_aborted"]) == (2, 2, 0)


def test_padding_is_made_lazily() -> None:
    pieces = content_pieces(["a", "b"], answer_bytes=10**12)
    assert [next(pieces) for _ in range(3)][0] == "a b"


@pytest.mark.parametrize("stream", [False, True])
async def test_raw_separator_text_is_sent_unescaped(fake: FakeUpstream, stream: bool) -> None:
    await fake.configure(raw_separator_text=True)
    response = await _raw(fake, {**BODY, "stream": stream})
    for char in ("\u2028", "\u2029", "\u0085"):
        assert char.encode() in response.content
    expected = "".join(content_pieces(answer_for(BODY["messages"], None)[0], 0, True))
    assert expected.endswith(SEPARATOR_TEXT)
    if stream:
        assert _streamed_text(_sse_payloads(response.content)) == expected
    else:
        assert response.json()["choices"][0]["message"]["content"] == expected


async def test_echo_key_fault_puts_the_bearer_token_in_the_error_code(fake: FakeUpstream) -> None:
    await fake.fault(401, echo_key=True)
    echoed = await _raw(fake, BODY)
    await fake.fault(401)
    plain = await _raw(fake, BODY)
    assert echoed.status_code == 401 and echoed.json()["error"]["code"] == "test-key"
    assert "code" not in plain.json()["error"]


@pytest.mark.parametrize("path, body", [("/_fake/config", {"raw_separator_text": "false"}),
                                        ("/_fake/config", {"answer_bytes": "many"}),
                                        ("/_fake/faults", {"status": 500, "echo_key": 1})])
async def test_control_values_of_the_wrong_type_are_refused(fake: FakeUpstream, path: str,
                                                            body: dict) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(fake.url(path), json=body)
    assert response.status_code == 400


# --- a thinking model -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["glm-4.6", "kimi-k2-0905-preview"])
async def test_reasoning_streams_ahead_of_the_answer_and_is_counted_in_usage(
        fake: FakeUpstream, model: str) -> None:
    await fake.configure(reasoning_tokens=11)
    events = await _stream(fake, {**BODY, "model": model, "stream": True,
                                  "stream_options": {"include_usage": True}})
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e["choices"]]
    kinds = [key for delta in deltas for key in ("reasoning_content", "content")
             if delta.get(key)]
    assert kinds == sorted(kinds, reverse=True) and kinds.count("reasoning_content") >= 3
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    words = reasoning_for(BODY["messages"], 11)
    assert reasoning == " ".join(words) and len(words) == 11
    assert "ECHO-CANARY" not in reasoning and reasoning.startswith("Reasoning ")
    assert _streamed_text(events) == " ".join(answer_for(BODY["messages"], None)[0])
    # the final usage chunk (GLM's dialect), or usage inside the last choice (Kimi's)
    [usage] = [e.get("usage") or e["choices"][0]["usage"] for e in events if isinstance(e, dict)
               and ("usage" in e or (e["choices"] and "usage" in e["choices"][0]))]
    answer_tokens = len(answer_for(BODY["messages"], None)[0])
    assert usage["completion_tokens"] == answer_tokens + 11
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 11}


async def test_reasoning_in_a_json_answer_and_off_again(fake: FakeUpstream) -> None:
    await fake.configure(reasoning_tokens=5)
    message = (await _raw(fake, BODY)).json()["choices"][0]["message"]
    assert message["reasoning_content"] == " ".join(reasoning_for(BODY["messages"], 5))
    assert message["content"] == " ".join(answer_for(BODY["messages"], None)[0])
    await fake.control.areset(quiet=True)
    plain = (await _raw(fake, BODY)).json()
    assert "reasoning_content" not in plain["choices"][0]["message"]
    assert "completion_tokens_details" not in plain["usage"]
