"""The Supabase side: idempotent upserts and newest-first history reads through supabase-py.

The client is supabase-py's async client over an ``httpx.AsyncClient`` we own, so the event loop
never blocks and every request is an httpx request that OpenTelemetry's httpx instrumentation
traces (we instrument our client ourselves unless httpx is instrumented globally already).
supabase-py's own retry is off: the outbox worker owns retrying, with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from postgrest.types import ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from .errors import ArchiveUnavailable, classify
from .telemetry import SupabaseTelemetry

log = logging.getLogger("exai.persistence")

CONVERSATIONS = "conversations"
MESSAGES = "messages"
CONVERSATION_KEY = "continuation_id"
MESSAGE_KEY = "idempotency_key"
HISTORY_COLUMNS = "role,content,created_at,idempotency_key"


class SupabaseRepository:
    """Reads and writes the two archive tables; raises only ``ArchiveError`` subclasses."""

    def __init__(self, client: AsyncClient, http: httpx.AsyncClient,
                 telemetry: SupabaseTelemetry, key: str) -> None:
        self._client = client
        self._http = http
        self._telemetry = telemetry
        self._secrets = (key,)
        self._schema = client.options.schema  # what every request addresses (Accept-Profile)

    @classmethod
    async def connect(cls, url: str, key: str, telemetry: SupabaseTelemetry, *,
                      timeout_secs: float = 10.0, tracer_provider: Any = None,
                      meter_provider: Any = None) -> SupabaseRepository:
        """Build the client (no network call happens here)."""
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_secs, connect=min(timeout_secs, 5.0)),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        )
        if not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
            HTTPXClientInstrumentor.instrument_client(
                http, tracer_provider=tracer_provider, meter_provider=meter_provider,
                request_hook=telemetry.httpx_request_hook)
        options = AsyncClientOptions(httpx_client=http, postgrest_client_retry=False,
                                     auto_refresh_token=False, persist_session=False)
        try:
            client = await acreate_client(url, key, options=options)
        except Exception:
            await http.aclose()
            raise
        return cls(client, http, telemetry, key)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, operation: str, table: str, builder: Any) -> Any:
        async with self._telemetry.operation(operation, table, self._schema):
            try:
                return await builder.execute()
            except Exception as exc:  # every failure leaves as an ArchiveError
                # Not chained: the span records the exception's traceback, and the original's
                # text carries PostgREST's details ("Failing row contains (...)": the content).
                raise classify(exc, self._secrets) from None

    async def upsert_conversation(self, row: dict[str, Any]) -> str:
        """Insert or update the conversation keyed on ``continuation_id``; returns its ``id``."""
        builder = (self._client.table(CONVERSATIONS)
                   .upsert(row, on_conflict=CONVERSATION_KEY, returning=ReturnMethod.representation)
                   .select("id"))
        response = await self._call("upsert", CONVERSATIONS, builder)
        data = response.data if isinstance(response.data, list) else []
        if not data or "id" not in data[0]:
            raise ArchiveUnavailable("conversation upsert returned no id", error_type="no_id")
        return str(data[0]["id"])

    async def upsert_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert messages keyed on ``idempotency_key``; a message already there is a no-op."""
        if not rows:
            return
        builder = self._client.table(MESSAGES).upsert(
            list(rows), on_conflict=MESSAGE_KEY, returning=ReturnMethod.minimal)
        await self._call("upsert", MESSAGES, builder)

    async def conversation_id(self, continuation_id: str) -> str | None:
        builder = (self._client.table(CONVERSATIONS).select("id")
                   .eq(CONVERSATION_KEY, continuation_id).limit(1))
        response = await self._call("select", CONVERSATIONS, builder)
        return str(response.data[0]["id"]) if response.data else None

    async def newest_messages(self, conversation_id: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest messages, newest first (the caller puts them back in order)."""
        builder = (self._client.table(MESSAGES).select(HISTORY_COLUMNS)
                   .eq("conversation_id", conversation_id)
                   .order("created_at", desc=True).order("id", desc=True)
                   .limit(limit))
        response = await self._call("select", MESSAGES, builder)
        return list(response.data or [])

    async def ping(self) -> None:
        """A cheap authenticated read that proves the API, the key and the schema all work."""
        builder = self._client.table(CONVERSATIONS).select("id").limit(1)
        await self._call("select", CONVERSATIONS, builder)
