"""Supabase calls are as visible as the LLM calls: named spans, durations, slowness, backlog."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

from app.persistence import ArchiveUnavailable, RejectedWrite, names
from app.persistence.repository import SupabaseRepository
from app.persistence.rows import conversation_row, message_rows
from app.persistence.telemetry import SupabaseTelemetry
from app.storage.turns import Turn
from otel import names as catalogue
from tests.harness.postgrest import PostgrestTestServer

from .conftest import FAKE_SERVICE_ROLE_KEY, Telemetry


def _is_database_call(span: Any) -> bool:
    """A Supabase operation's span (its httpx child carries no db.system.name)."""
    return names.DB_SYSTEM_NAME in (span.attributes or {})


async def test_calls_are_spans_named_after_table_and_operation(
        make_archive: Any, redis_client: Any, telemetry: Telemetry,
        server: PostgrestTestServer) -> None:
    archive = await make_archive(redis_client)
    with telemetry.instruments.tracer.start_as_current_span("tools/call chat"):
        await archive.record_turn("conv-1", "s", [Turn("user", "q"), Turn("assistant", "a")], {})
        assert await archive.drain(5.0)
        await archive.load_history("conv-1", 5)

    spans = telemetry.finished()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    # Database client spans by the conventions: CLIENT, "{db.operation.name} {db.collection.name}"
    for name in ("upsert conversations", "upsert messages",
                 "select conversations", "select messages"):
        assert name in by_name, sorted(by_name)
        for span in by_name[name]:
            assert span.kind is SpanKind.CLIENT
            assert dict(span.attributes) == {
                names.DB_SYSTEM_NAME: "postgresql", catalogue.DB_NAMESPACE: "public",
                names.DB_OPERATION_NAME: name.split()[0], names.DB_COLLECTION_NAME: name.split()[1],
                names.SERVER_ADDRESS: "127.0.0.1", names.SERVER_PORT: server.port}
    upsert = by_name["upsert messages"][0]

    if not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:  # else: global provider
        http = [s for s in spans if s.kind == SpanKind.CLIENT and not _is_database_call(s)]
        assert {s.name for s in http} >= {"POST /rest/v1/messages", "POST /rest/v1/conversations",
                                          "GET /rest/v1/messages", "GET /rest/v1/conversations"}
        post = next(s for s in http if s.name == "POST /rest/v1/messages")
        assert post.parent.span_id == upsert.context.span_id
        assert post.attributes[names.DB_COLLECTION_NAME] == "messages"
    # The reads ran inside the chat call's trace; the writes ran later, in the worker, in a
    # delivery span linked back to the chat.
    chat = by_name["tools/call chat"][0]
    read = by_name["select messages"][0]
    assert read.context.trace_id == chat.context.trace_id
    deliver = by_name[names.DELIVERY_SPAN][0]
    assert [link.context.span_id for link in deliver.links] == [chat.context.span_id]
    assert deliver.attributes[names.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert upsert.parent.span_id == deliver.context.span_id
    assert deliver.kind is SpanKind.INTERNAL and names.DB_SYSTEM_NAME not in deliver.attributes
    for span in spans:  # no header capture: the key never reaches telemetry
        assert FAKE_SERVICE_ROLE_KEY not in repr(dict(span.attributes or {}))

    points = telemetry.points(names.OPERATION_DURATION)
    keys = {(p.attributes[names.DB_OPERATION_NAME], p.attributes[names.DB_COLLECTION_NAME])
            for p in points}
    assert keys >= {("upsert", "messages"), ("upsert", "conversations"),
                    ("select", "messages"), ("select", "conversations")}
    assert all(names.ERROR_TYPE not in p.attributes for p in points)


async def test_failures_carry_error_type_and_slow_calls_stand_out(
        make_archive: Any, redis_client: Any, telemetry: Telemetry,
        server: PostgrestTestServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="exai.persistence")
    archive = await make_archive(redis_client)
    server.fail_status = 503
    with pytest.raises(ArchiveUnavailable):
        await archive.load_history("conv-1", 5)
    server.fail_status = None
    server.delay = 0.6
    await archive.load_history("conv-1", 5)

    failed = [p for p in telemetry.points(names.OPERATION_DURATION)
              if p.attributes.get(names.ERROR_TYPE) == "PGRST001"]
    assert failed and failed[0].attributes[names.DB_OPERATION_NAME] == "select"
    assert telemetry.total(names.OPERATION_SLOW, **{names.DB_COLLECTION_NAME: "conversations"}) == 1
    slow = [s for s in telemetry.finished() if s.attributes.get(names.SLOW)]
    assert [s.name for s in slow] == ["select conversations"]
    assert any("slow Supabase operation: select conversations" in r.getMessage()
               and "trace_id=" in r.getMessage() for r in caplog.records)
    # Durations over 500 ms also show in the histogram: 0.5 is a bucket edge.
    assert 0.5 in names.DURATION_BUCKETS


async def test_a_failed_call_carries_the_postgres_error_code_when_there_is_one(
        telemetry: Telemetry, server: PostgrestTestServer) -> None:
    repo = await SupabaseRepository.connect(
        server.url, FAKE_SERVICE_ROLE_KEY, SupabaseTelemetry(telemetry.instruments, server.url),
        tracer_provider=telemetry.tracer_provider)
    try:
        turns = [Turn("user", "q")]
        conversation = await repo.upsert_conversation(conversation_row("c-1", None, turns))
        row = {**message_rows("c-1", turns)[0], "conversation_id": conversation,
               "role": "robot"}  # violates the role check: SQLSTATE 23514
        with pytest.raises(RejectedWrite):
            await repo.upsert_messages([row])
        server.fail_status = 503  # PostgREST's own error (PGRST001): no database answer
        with pytest.raises(ArchiveUnavailable):
            await repo.ping()
    finally:
        server.fail_status = None
        await repo.aclose()
    rejected, unavailable = [s for s in telemetry.finished()
                             if _is_database_call(s) and s.status.status_code is StatusCode.ERROR]
    assert (rejected.name, unavailable.name) == ("upsert messages", "select conversations")
    assert rejected.attributes[catalogue.DB_RESPONSE_STATUS_CODE] == "23514"
    assert rejected.attributes[names.ERROR_TYPE] == "23514"
    assert catalogue.DB_RESPONSE_STATUS_CODE not in unavailable.attributes
    assert unavailable.attributes[names.ERROR_TYPE] == "PGRST001"


async def test_the_health_probe_runs_outside_the_call_that_started_it(
        make_archive: Any, telemetry: Telemetry) -> None:
    """The probe is shared by whoever asks next: its spans start their own traces."""
    archive = await make_archive(None)
    with telemetry.instruments.tracer.start_as_current_span("tools/call status") as caller:
        await archive.check_health()
    caller_trace = caller.get_span_context().trace_id
    probe = [s for s in telemetry.finished() if s.name != "tools/call status"]
    assert probe, "the probe made no span"
    assert all(s.context.trace_id != caller_trace for s in probe), [s.name for s in probe]
