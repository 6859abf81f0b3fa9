"""The client side of app/protocol.py: requests as the contract writes them, and replies read from
the daemon's own reply builders, so both sides of the wire come from one module."""

from __future__ import annotations

from app import protocol
from app.errors import ErrorCode, ToolError

TRACE_ID = "cd" * 16


def test_requests_are_the_contract_frames():
    assert protocol.hello_request("t") == {"op": "hello", "token": "t"}
    assert protocol.hello_request("t", "s-1") == {"op": "hello", "token": "t", "session_id": "s-1"}
    assert protocol.call_tool_request("chat", {"prompt": "hi"}, "r-1", {"traceparent": "x"}) == {
        "op": "call_tool", "name": "chat", "arguments": {"prompt": "hi"}, "request_id": "r-1",
        "_meta": {"traceparent": "x"}}
    assert protocol.call_tool_request("version") == {"op": "call_tool", "name": "version",
                                                     "arguments": {}}
    assert protocol.list_tools_request("r-2") == {"op": "list_tools", "request_id": "r-2"}
    assert protocol.ping_request() == {"op": "ping"}
    assert protocol.cancel_request("r-1") == {"op": "cancel", "request_id": "r-1"}


def test_every_request_built_here_is_one_the_daemon_accepts():
    for frame in (protocol.call_tool_request("chat", {"prompt": "hi"}, "r-1"),
                  protocol.list_tools_request("r-2"), protocol.ping_request("r-3"),
                  protocol.cancel_request("r-1")):
        assert protocol.parse_request(frame).op == frame["op"]
    assert protocol.parse_hello(protocol.hello_request("t", "s-1")) == protocol.Hello("t", "s-1")


def test_hello_ack_accepted_and_refused():
    ack = protocol.parse_hello_ack(protocol.hello_ack("s-1", "1.0", 90.0))
    assert ack.ok and ack.session_id == "s-1" and ack.tool_timeout_secs == 90.0
    refused = protocol.parse_hello_ack(protocol.hello_refused("unauthorized"))
    assert not refused.ok and refused.error == "unauthorized" and refused.session_id == ""


def test_a_failed_call_and_an_error_frame_carry_their_code():
    failure = ToolError(ErrorCode.OVER_CAPACITY, "busy", details={"retry_after": 1.5})
    reply = protocol.parse_call_reply(protocol.call_failed("r-1", failure.to_dict(), TRACE_ID))
    assert not reply.ok and reply.trace_id == TRACE_ID and reply.texts == ()
    assert reply.error == protocol.ReplyError("OVER_CAPACITY", "busy", {"retry_after": 1.5})
    assert reply.error.code == ErrorCode.OVER_CAPACITY
    refused = protocol.parse_call_reply(
        protocol.error_frame(ErrorCode.VALIDATION_ERROR, "bad", "r-2"))
    assert refused.op == "error" and refused.error is not None
    assert refused.error.code == ErrorCode.VALIDATION_ERROR and refused.request_id == "r-2"


def test_usage_null_is_unknown_and_usage_present_is_typed():
    unknown = protocol.parse_call_reply(protocol.call_ok("r-1", "a", {"usage": None}, TRACE_ID))
    assert unknown.ok and unknown.text == "a" and unknown.usage is None
    assert unknown.cost_usd is None
    known = protocol.parse_call_reply(protocol.call_ok("r-1", "a", {
        "usage": {"input_tokens": 5, "output_tokens": 2, "cached_input_tokens": 0},
        "cost_usd": 0.5}, TRACE_ID))
    assert known.usage == protocol.TokenUsage(5, 2, 0) and known.cost_usd == 0.5


def test_interim_frames():
    assert protocol.parse_interim(protocol.progress("r-1", "calling")) == protocol.Interim(
        streamed=False, text="calling")
    assert protocol.parse_interim(protocol.stream_chunk("r-1", "par")) == protocol.Interim(
        streamed=True, text="par")
    assert protocol.parse_interim(protocol.pong("r-1")) is None
