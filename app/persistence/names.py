"""Telemetry names of the Supabase archive, in its own short vocabulary.

The metrics and the attributes they carry are defined in the catalogue (``otel/names.py``), which
builds the instruments and derives the Prometheus names; the span-only names live here, under the
``exai.supabase.`` prefix, since no OpenTelemetry convention covers an outbox or Supabase itself.
"""

from __future__ import annotations

from otel import names as catalogue

# --- metrics and their attributes: defined in the catalogue, otel/names.py ---------------------
OUTBOX_DEPTH = catalogue.EXAI_SUPABASE_OUTBOX_DEPTH
OUTBOX_AGE = catalogue.EXAI_SUPABASE_OUTBOX_AGE
OUTBOX_DEAD_LETTERS = catalogue.EXAI_SUPABASE_OUTBOX_DEAD_LETTERS
OUTBOX_DELIVERY_FAILURES = catalogue.EXAI_SUPABASE_OUTBOX_DELIVERY_FAILURES
OUTBOX_DROPPED = catalogue.EXAI_SUPABASE_OUTBOX_DROPPED
OPERATION_DURATION = catalogue.EXAI_SUPABASE_OPERATION_DURATION
OPERATION_SLOW = catalogue.EXAI_SUPABASE_OPERATION_SLOW
DURATION_BUCKETS = catalogue.SUPABASE_DURATION_BUCKETS
SLOW_OPERATION_SECS = catalogue.SUPABASE_SLOW_SECS
OUTBOX_BACKEND = catalogue.EXAI_SUPABASE_OUTBOX_BACKEND
FAILURE_DISPOSITION = catalogue.EXAI_SUPABASE_FAILURE_DISPOSITION
DB_SYSTEM_NAME = catalogue.DB_SYSTEM_NAME
DB_OPERATION_NAME = catalogue.DB_OPERATION_NAME  # upsert | select
DB_COLLECTION_NAME = catalogue.DB_COLLECTION_NAME  # the table: conversations | messages
ERROR_TYPE = catalogue.ERROR_TYPE  # SQLSTATE / PostgREST code, HTTP status, or exception class
SERVER_ADDRESS = catalogue.SERVER_ADDRESS
SERVER_PORT = catalogue.SERVER_PORT
GEN_AI_CONVERSATION_ID = catalogue.GEN_AI_CONVERSATION_ID  # span only: the continuation_id

# --- span attributes ----------------------------------------------------------------------------
SLOW = "exai.supabase.slow"  # true when over SLOW_OPERATION_SECS
OUTBOX_MESSAGES = "exai.supabase.outbox.messages"  # messages in the write
OUTBOX_ATTEMPT = "exai.supabase.outbox.attempt"  # 1 for the first try

# --- spans ------------------------------------------------------------------------------------
# "{db.operation.name} {db.collection.name}" around each call, e.g. "upsert messages"; its httpx
# child is renamed "{METHOD} /rest/v1/{table}".
DELIVERY_SPAN = "supabase outbox deliver"  # one delivery attempt, linked to the chat's span

