"""What the OTel logs bridge exports of a library's records: their fields, never their objects.

websockets logs through a ``LoggerAdapter`` that puts the connection object in every record
(``extra={"websocket": connection}``), and the bridge copies a record's extra fields into
attributes. An object is no attribute value: the SDK warned ("Invalid type ... for attribute
value") once per record on the console. The bridge leaves such fields out and exports the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response

from tests.harness.log_capture import captured_logs
from tests.harness.procs import LOOPBACK

PRIMITIVES = (str, bool, int, float, bytes)


def _exportable(value: Any) -> bool:
    """An attribute value OTLP can carry: a primitive, or a list or map of them."""
    if isinstance(value, PRIMITIVES):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _exportable(v) for k, v in value.items())
    if isinstance(value, Sequence):
        return all(_exportable(item) for item in value)
    return False


async def _echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


def _forbid_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/forbidden":  # logged by websockets: "connection rejected (403 ...)"
        return connection.respond(403, "no\n")
    return None


async def test_websockets_records_are_exported_without_the_connection_object(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    with captured_logs("websockets", logging.DEBUG) as output:
        async with serve(_echo, LOOPBACK, 0, process_request=_forbid_path) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://{LOOPBACK}:{port}/") as client:
                await client.send("hello")
                assert await client.recv() == "hello"
            with pytest.raises(InvalidStatus):
                async with connect(f"ws://{LOOPBACK}:{port}/forbidden"):
                    pass

    records = [r.log_record for r in output.exported.get_finished_logs()]
    bodies = [str(r.body) for r in records]
    assert any("connection rejected (403" in body for body in bodies), bodies
    assert any("TEXT 'hello'" in body for body in bodies), bodies  # DEBUG frame records
    for record in records:
        attributes = dict(record.attributes or {})
        assert "websocket" not in attributes, attributes
        assert all(_exportable(value) for value in attributes.values()), attributes
    scopes = {r.instrumentation_scope.name for r in output.exported.get_finished_logs()}
    assert {"websockets.server", "websockets.client"} <= scopes, scopes
    invalid = [r.getMessage() for r in caplog.records if "Invalid type" in r.getMessage()]
    assert not invalid, invalid


def test_only_the_parts_that_are_no_attribute_value_are_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    with captured_logs("exai.test.hygiene") as output:
        logging.getLogger("exai.test.hygiene").info("record", extra={
            "kept": 1, "object": object(), "items": ["a", object(), 2],
            "map": {"ok": True, "object": object()}, "lone": "\udc00"})
    [exported] = output.exported.get_finished_logs()
    attributes = dict(exported.log_record.attributes or {})
    assert exported.log_record.body == "record"
    assert {key: attributes[key] for key in ("kept", "items", "map", "lone")} == {
        "kept": 1, "items": ("a", 2), "map": {"ok": True}, "lone": "\\udc00"}
    assert "object" not in attributes
    assert not [r for r in caplog.records if "Invalid type" in r.getMessage()]


def test_the_trace_context_is_exported_once_not_also_as_attributes() -> None:
    """The console's trace_id=/span_id= fields live on the shared record: the exported record
    carries the context in its own fields only (an attribute would collide in Loki)."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with captured_logs("exai.test.context") as output, \
            tracer.start_as_current_span("tools/call chat") as span:
        logging.getLogger("exai.test.context").info("inside")
    [exported] = output.exported.get_finished_logs()
    assert exported.log_record.trace_id == span.get_span_context().trace_id
    assert not {"trace_id", "span_id"} & dict(exported.log_record.attributes or {}).keys()
    assert f"trace_id={span.get_span_context().trace_id:032x}" in output.console.getvalue()
