"""Telemetry names of the Supabase archive.

No OpenTelemetry convention covers an outbox or Supabase itself, so these live under the
``exai.supabase.`` prefix (``otel/names.py`` holds the daemon-wide names; attributes below reuse
the standard ``db.*`` and ``error.type`` names).
"""

from __future__ import annotations

# --- metrics ----------------------------------------------------------------------------------
OUTBOX_DEPTH = "exai.supabase.outbox.depth"  # gauge, {write}: writes not yet delivered
OUTBOX_AGE = "exai.supabase.outbox.age"  # gauge, s: age of the oldest pending write (0 if none)
OUTBOX_DEAD_LETTERS = "exai.supabase.outbox.dead_letters"  # gauge, {write}: parked poison writes
OUTBOX_DELIVERY_FAILURES = "exai.supabase.outbox.delivery_failures"  # counter, {failure}
OUTBOX_DROPPED = "exai.supabase.outbox.dropped"  # counter, {write}: lost to the memory bound
OPERATION_DURATION = "exai.supabase.operation.duration"  # histogram, s
OPERATION_SLOW = "exai.supabase.operation.slow"  # counter, {operation}: over SLOW_OPERATION_SECS

# --- attributes -------------------------------------------------------------------------------
DB_SYSTEM_NAME = "db.system.name"
DB_OPERATION_NAME = "db.operation.name"  # upsert | select
DB_COLLECTION_NAME = "db.collection.name"  # the table: conversations | messages
ERROR_TYPE = "error.type"  # SQLSTATE / PostgREST code, HTTP status, or exception class
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
OUTBOX_BACKEND = "exai.supabase.outbox.backend"  # redis | memory
FAILURE_DISPOSITION = "exai.supabase.failure.disposition"  # retry | dead_letter
SLOW = "exai.supabase.slow"  # span attribute, true when over SLOW_OPERATION_SECS
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"  # span only: the continuation_id
OUTBOX_MESSAGES = "exai.supabase.outbox.messages"  # span: messages in the write
OUTBOX_ATTEMPT = "exai.supabase.outbox.attempt"  # span: 1 for the first try

# --- spans ------------------------------------------------------------------------------------
# "supabase {db.operation.name} {db.collection.name}" around each call, e.g.
# "supabase upsert messages"; its httpx child is renamed "{METHOD} /rest/v1/{table}".
DELIVERY_SPAN = "supabase outbox deliver"  # one delivery attempt, linked to the chat's span

DB_SYSTEM_VALUE = "supabase"
SLOW_OPERATION_SECS = 0.5
# Same advice as db.client.operation.duration: 0.5 is a bucket edge, so "slower than 500 ms" is
# readable straight from the histogram.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
