"""Supabase and outbox failures are described without the rows' content or the service key.

Their descriptions reach the console, the exported log, span events and ``/health``'s
``last_error``, which needs no token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from postgrest.exceptions import APIError

from app.config import Settings
from app.persistence import build_archive
from app.persistence.errors import classify
from app.persistence.outbox import Claim, Outbox, OutboxEntry
from app.storage.turns import Turn
from tests.harness.log_capture import LogOutput, captured_logs
from tests.harness.otel_capture import InMemoryTelemetry as Telemetry
from tests.harness.postgrest import PostgrestTestServer
from tests.harness.redis_server import redis_process

from .conftest import FAST

CONTENT = "Initech merger terms, strictly private"
SECRET_WORD = "Initech"


@pytest.fixture
def log_output() -> Iterator[LogOutput]:
    with captured_logs("exai.persistence") as output:
        yield output


def _span_text(telemetry: Telemetry) -> str:
    """Every span's name, status, attributes and events, as one text."""
    return json.dumps([{"name": s.name, "status": s.status.description,
                        "attributes": dict(s.attributes or {}),
                        "events": [dict(e.attributes or {}) for e in s.events]}
                       for s in telemetry.spans.get_finished_spans()], default=str)


async def test_a_rejected_row_keeps_its_content_out_of_spans_logs_and_health(
        make_archive: Any, redis_client: Any, telemetry: Telemetry,
        log_output: LogOutput) -> None:
    archive = await make_archive(redis_client)
    # Over the content length check: PostgreSQL's detail quotes the failing row.
    await archive.record_turn("conv-long", "s", [Turn("assistant", CONTENT + "x" * 200_001)], {})
    assert await archive.drain(5.0)
    assert len(await archive.outbox.dead_letters()) == 1

    health = await archive.check_health()
    assert "messages_content_length" in log_output.console.getvalue()
    for text in (_span_text(telemetry), log_output.everything(), json.dumps(health)):
        assert SECRET_WORD not in text


@pytest.mark.parametrize("key", ["fake-service-key-first-half\nfake-service-key-second-half",
                                 "fake-service-key-first-half\u00e9fake-service-key-second-half"])
async def test_a_key_no_header_can_carry_turns_the_archive_off_without_showing_it(
        server: PostgrestTestServer, telemetry: Telemetry, log_output: LogOutput,
        key: str) -> None:
    """httpx would refuse the header and quote its value, the key, into the error, its span
    and /health; a non-ASCII key would fail every call with a UnicodeEncodeError instead."""
    settings = Settings(SUPABASE_URL=server.url, SUPABASE_SERVICE_ROLE_KEY=key, REDIS_URL="")
    archive = build_archive(settings, telemetry.instruments,
                            tracer_provider=telemetry.tracer_provider,
                            meter_provider=telemetry.meter_provider, **FAST)
    await archive.start()
    try:
        health = await archive.check_health()
    finally:
        await archive.aclose(drain_timeout_secs=0)
    assert health["status"] == "degraded" and health["configured"] is False
    assert "SUPABASE_SERVICE_ROLE_KEY" in health["reason"]
    assert "SUPABASE_SERVICE_ROLE_KEY" in log_output.console.getvalue()
    for text in (_span_text(telemetry), log_output.everything(), json.dumps(health)):
        assert "fake-service-key" not in text, text


async def test_a_redis_failure_under_the_outbox_is_described_not_traced(
        tmp_path: Path, log_output: LogOutput) -> None:
    """redis-py quotes a failed pipeline command (here the dead letter, content and all)."""
    proc = redis_process(tmp_path / "redis").start()
    client = redis_asyncio.Redis.from_url(proc.url)  # type: ignore[attr-defined]
    try:
        outbox = Outbox(client, prefix="o")  # short keys: redis-py quotes 100 characters
        entry = OutboxEntry("conv-1", {}, [{"role": "user", "content": CONTENT}])
        await client.lpush(outbox.processing_key, entry.dumps())
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 1)  # every write now fails with OOM

        await outbox.dead_letter(Claim(entry, "redis", entry.dumps()),
                                 {"errors": [{"message": CONTENT}], "entry": {}})
    finally:
        await client.aclose()
        proc.stop()
    assert len(await outbox.dead_letters()) == 1  # kept in memory instead
    assert "OutOfMemoryError: OOM" in log_output.console.getvalue()
    assert SECRET_WORD not in log_output.everything()


KEY = "fake-service-role-key"


@pytest.mark.parametrize("error", [
    httpx.ConnectError(f"cannot connect with {KEY}\nforged line"),
    APIError({"message": f"bad key {KEY}\nforged line", "code": "PGRST301",
              "hint": f"use {KEY}"}),
    RuntimeError(f"client built with {KEY}\nforged line"),
], ids=["httpx", "postgrest", "other"])
def test_classify_masks_the_key_and_escapes_controls(error: Exception) -> None:
    summary = classify(error, (KEY,)).summary()
    assert KEY not in json.dumps(summary)
    assert "\n" not in summary["message"] and "forged line" in summary["message"]
