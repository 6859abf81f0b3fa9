"""``exai mcp`` driven by the MCP SDK's own client session, against a live daemon.

Every process is real: the SDK's stdio client spawns ``exai mcp``, which talks to ``exai serve``,
which calls ``exai fake-llm``; spans arrive over OTLP at the test's receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.harness.procs import free_port

from .tracing import ancestors, editor_span, one, render_tree

BRIDGE, DAEMON = "exai-mcp-bridge", "exai-daemon"
LLM_SPAN = "chat glm-4.5-flash"


def text_of(result: types.CallToolResult) -> str:
    return "".join(item.text for item in result.content if isinstance(item, types.TextContent))


async def test_lists_and_calls_the_daemon_tools(daemon, bridge):
    async with bridge(daemon.url) as session:
        listing = await session.list_tools()
        assert {tool.name for tool in listing.tools} == {"chat", "listmodels", "status", "version"}
        chat_tool = next(tool for tool in listing.tools if tool.name == "chat")
        assert "prompt" in chat_tool.input_schema["properties"]

        version = await session.call_tool("version", {})
        assert not version.is_error
        assert json.loads(text_of(version))["name"] == "exai-daemon"

        answer = await session.call_tool("chat", {"prompt": "hello through MCP"})
        assert not answer.is_error and text_of(answer).startswith("Simulated answer")
        assert answer.structured_content["provider"] == "glm"
        continuation = answer.structured_content["continuation_id"]
        assert len(answer.meta["exai/trace_id"]) == 32

        again = await session.call_tool("chat", {"prompt": "and again",
                                                 "continuation_id": continuation})
        assert again.structured_content["continuation_id"] == continuation


async def test_one_trace_from_the_editor_to_the_llm_call(daemon, bridge, sink):
    async with bridge(daemon.url) as session:
        with editor_span() as (trace_id, editor_span_id):
            answer = await session.call_tool("chat", {"prompt": "trace me"})
    assert answer.meta["exai/trace_id"] == trace_id, "the reply names the editor's trace"

    spans = await sink.wait_for(trace_id, lambda found: {(s.service, s.kind) for s in found} >= {
        (BRIDGE, "SERVER"), (BRIDGE, "CLIENT"), (DAEMON, "SERVER"), (DAEMON, "CLIENT")})
    print(f"\ntrace {trace_id} (editor span {editor_span_id}):\n{render_tree(spans)}")

    ids = {span.span_id for span in spans}
    bridge_server = one(spans, BRIDGE, "SERVER", "tools/call chat")
    # Every span descends from a bridge SERVER span, whose parent is the editor's span (the SDK
    # client also lists tools before a call, to learn output schemas: a sibling tree).
    roots = [span for span in spans if span.parent_id not in ids]
    assert {(r.service, r.kind) for r in roots} == {(BRIDGE, "SERVER")}, render_tree(spans)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # (With an SDK in this test process, its client's own span sits in between.)
        assert bridge_server.parent_id == editor_span_id

    bridge_client = one(spans, BRIDGE, "CLIENT", "tools/call chat")
    daemon_server = one(spans, DAEMON, "SERVER", "tools/call chat")
    llm = one(spans, DAEMON, "CLIENT", LLM_SPAN)
    assert bridge_client.parent_id == bridge_server.span_id
    assert daemon_server.parent_id == bridge_client.span_id
    assert daemon_server in ancestors(llm, spans)
    assert bridge_server in ancestors(llm, spans), "bridge to provider is one tree"

    attributes = bridge_client.attributes
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "chat"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["mcp.session.id"] == daemon_server.attributes["mcp.session.id"]
    assert attributes["jsonrpc.request.id"] == answer.meta["exai/request_id"]
    assert attributes["network.transport"] == "tcp" and attributes["server.port"] > 0
    assert llm.attributes["gen_ai.provider.name"] == "z_ai"

    # The bridge process flushes its metrics as it exits with the session.
    points = await _eventually(lambda: sink.points("mcp.client.operation.duration", BRIDGE))
    assert {"mcp.method.name": "tools/call", "gen_ai.tool.name": "chat"} in \
        [p.attributes for p in points]


async def test_progress_and_stream_chunks_become_progress_notifications(daemon, bridge):
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with bridge(daemon.url) as session:
        answer = await session.call_tool("chat", {"prompt": "stream please", "stream": True},
                                         progress_callback=on_progress)
    assert seen[0][1] == "calling glm model glm-4.5-flash"
    chunks = "".join(message or "" for _, message in seen[1:])
    assert chunks == text_of(answer), "every stream_chunk arrived, in order, before the result"
    assert [p for p, _ in seen] == sorted({p for p, _ in seen}), "progress only increases"


async def test_stream_chunks_can_be_skipped(daemon, bridge):
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with bridge(daemon.url, EXAI_MCP_FORWARD_STREAM_CHUNKS="false") as session:
        answer = await session.call_tool("chat", {"prompt": "stream please", "stream": True},
                                         progress_callback=on_progress)
    assert seen == ["calling glm model glm-4.5-flash"] and text_of(answer)


async def test_cancel_from_the_mcp_client_cancels_the_daemon_call(daemon, bridge, fake_llm, sink):
    await fake_llm.configure(latency_ms=8000)
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with bridge(daemon.url) as session:
        with editor_span() as (trace_id, _):
            call = asyncio.create_task(session.call_tool("chat", {"prompt": "never mind"},
                                                         progress_callback=on_progress))
        await asyncio.wait_for(started.wait(), 10)  # the daemon is now waiting on the LLM
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await session.call_tool("version", {})).is_error is False, "session still works"

    def cancelled_in_daemon(spans) -> bool:
        return any(s.service == DAEMON and s.kind == "SERVER"
                   and s.attributes.get("error.type") == "cancelled" for s in spans)

    spans = await sink.wait_for(trace_id, cancelled_in_daemon)
    daemon_server = one(spans, DAEMON, "SERVER", "tools/call chat")
    assert daemon_server.duration_secs < 5, "cancelled, not left to run for the LLM's 8 s"
    assert one(spans, BRIDGE, "CLIENT", "tools/call chat").attributes["error.type"] == "cancelled"


async def test_daemon_restart_fails_the_call_in_flight_then_reconnects(start_daemon, bridge,
                                                                       fake_llm):
    daemon = start_daemon()
    await fake_llm.configure(latency_ms=8000)
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with bridge(daemon.url, EXAI_MCP_RECONNECT_BASE_SECS="0.05",
                      EXAI_MCP_RECONNECT_MAX_SECS="0.5") as session:
        call = asyncio.create_task(session.call_tool("chat", {"prompt": "in flight"},
                                                     progress_callback=on_progress))
        await asyncio.wait_for(started.wait(), 10)
        daemon.proc.kill()
        began = time.monotonic()
        with pytest.raises(MCPError) as failure:
            await asyncio.wait_for(call, 5)
        assert time.monotonic() - began < 3, "failed at once, did not hang"
        assert failure.value.error.code == types.INTERNAL_ERROR
        assert failure.value.error.data["code"] == "DAEMON_CONNECTION_LOST"
        assert "retry" in failure.value.error.message

        # A call made while the daemon is down waits for the reconnect and then succeeds.
        await fake_llm.configure()
        waiting = asyncio.create_task(session.call_tool("version", {}))
        await asyncio.sleep(0.3)
        daemon.proc.start()
        result = await asyncio.wait_for(waiting, 15)
        assert not result.is_error
        assert not (await session.call_tool("chat", {"prompt": "after restart"})).is_error
    log = bridge.log_path.read_text()
    assert "lost the daemon connection" in log and "connected to the daemon" in log


async def test_bad_input_becomes_mcp_errors(daemon, bridge):
    async with bridge(daemon.url) as session:
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("no_such_tool", {"x": 1})
        assert unknown.value.error.code == types.INVALID_PARAMS
        assert "Unknown tool: 'no_such_tool'" in unknown.value.error.message
        assert "chat" in unknown.value.error.data["details"]["available"]

        invalid = await session.call_tool("chat", {"temperature": 5})
        assert invalid.is_error
        text = text_of(invalid)
        assert text.startswith("INVALID_ARGUMENTS: invalid arguments for chat")
        assert '"prompt"' in text and '"temperature"' in text and "trace_id: " in text

        extra = await session.call_tool("version", {"unexpected": True})
        assert extra.is_error and "INVALID_ARGUMENTS" in text_of(extra)

        assert not (await session.call_tool("version", {})).is_error, "the session survives"


async def test_the_daemon_tool_timeout_answers_first(start_daemon, bridge, fake_llm):
    daemon = start_daemon(EXAI_TOOL_TIMEOUT_SECS="1")
    await fake_llm.configure(latency_ms=4000)
    async with bridge(daemon.url, EXAI_TOOL_TIMEOUT_SECS="1") as session:
        began = time.monotonic()
        result = await session.call_tool("chat", {"prompt": "slow"})
    assert result.is_error and text_of(result).startswith("TIMEOUT: tool chat exceeded 1s")
    assert time.monotonic() - began < 3.5


async def test_the_bridge_deadline_cancels_a_call_the_daemon_does_not_end(start_daemon, bridge,
                                                                          fake_llm, sink):
    """A daemon that stops answering (frozen with SIGSTOP): the bridge's deadline, derived from
    the tool timeout the daemon announced, fires; the MCP client gets a clear error, and the
    daemon is told to cancel once it runs again."""
    daemon = start_daemon(EXAI_TOOL_TIMEOUT_SECS="1")
    await fake_llm.configure(latency_ms=8000)
    async with bridge(daemon.url, EXAI_MCP_DEADLINE_MARGIN_SECS="0.5") as session:
        with editor_span() as (trace_id, _):
            call = asyncio.create_task(session.call_tool("chat", {"prompt": "slow"}))
            await asyncio.sleep(0.3)
            os.kill(daemon.proc.process.pid, signal.SIGSTOP)
            try:
                with pytest.raises(MCPError) as failure:
                    await asyncio.wait_for(call, 10)
            finally:
                os.kill(daemon.proc.process.pid, signal.SIGCONT)
    assert failure.value.error.data["code"] == "BRIDGE_DEADLINE_EXCEEDED"
    spans = await sink.wait_for(trace_id, lambda found: any(
        s.service == DAEMON and s.attributes.get("error.type") in {"cancelled", "timeout"}
        for s in found))
    assert one(spans, BRIDGE, "CLIENT", "tools/call chat").attributes["error.type"] == "timeout"


async def test_no_daemon_is_a_clear_error_not_a_hang(bridge):
    url = f"ws://127.0.0.1:{free_port()}"
    async with bridge(url, EXAI_MCP_CONNECT_WAIT_SECS="1") as session:
        began = time.monotonic()
        with pytest.raises(MCPError) as failure:
            await session.list_tools()
        assert time.monotonic() - began < 4
    assert failure.value.error.data["code"] == "DAEMON_UNAVAILABLE"
    assert url in failure.value.error.message and "exai serve" in failure.value.error.message


async def test_a_wrong_token_says_so(daemon, bridge):
    # The wait covers the daemon's one-second answer to a wrong token.
    async with bridge(daemon.url, EXAI_WS_TOKEN="wrong-token", EXAI_MCP_CONNECT_WAIT_SECS="3") \
            as session:
        with pytest.raises(MCPError) as failure:
            await session.call_tool("version", {})
    assert "unauthorized" in failure.value.error.message
    assert "EXAI_WS_TOKEN" in failure.value.error.message


async def _eventually(read, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := read()):
        assert time.monotonic() < deadline, "nothing arrived"
        await asyncio.sleep(0.05)
    return found
