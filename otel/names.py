"""The telemetry catalogue: every attribute and metric name the daemon emits, defined once.

Standard names are imported from ``opentelemetry-semantic-conventions`` (MCP, GenAI, database,
process, network, error). Where no convention exists the name lives under ``exai.``; custom GenAI
metrics are ``exai.gen_ai.<thing>`` without a ``.client.`` segment (the conventions keep
``gen_ai.client.*`` for their own metrics). Each metric is registered once with ``_metric`` (unit,
kind, bucket advice, description, allowed attributes); ``otel/instruments.py`` and the Supabase
archive build their instruments from ``METRICS``, and ``prometheus_name`` is the one place that
says what the collector's remote write makes of a metric, for the alert rules, dashboards and
tests. Renaming anything here renames a Prometheus series: a breaking change for dashboards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import (
    jsonrpc_attributes,
    mcp_attributes,
    rpc_attributes,
)
from opentelemetry.semconv._incubating.attributes import network_attributes as network
from opentelemetry.semconv._incubating.metrics import (
    gen_ai_metrics,
    mcp_metrics,
    process_metrics,
)
from opentelemetry.semconv.attributes import (
    client_attributes,
    db_attributes,
    error_attributes,
    exception_attributes,
    server_attributes,
)
from opentelemetry.semconv.metrics.db_metrics import (
    DB_CLIENT_OPERATION_DURATION as _DB_DURATION,
)

SERVICE_NAME = "exai-daemon"
INSTRUMENTATION_SCOPE = "exai"

# --- attributes -------------------------------------------------------------------------------
MCP_METHOD_NAME = mcp_attributes.MCP_METHOD_NAME
MCP_SESSION_ID = mcp_attributes.MCP_SESSION_ID
MCP_PROTOCOL_VERSION = mcp_attributes.MCP_PROTOCOL_VERSION
RPC_RESPONSE_STATUS_CODE = rpc_attributes.RPC_RESPONSE_STATUS_CODE
GEN_AI_TOOL_NAME = gen_ai.GEN_AI_TOOL_NAME
GEN_AI_OPERATION_NAME = gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME = gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL = gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_RESPONSE_MODEL = gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID = gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_CONVERSATION_ID = gen_ai.GEN_AI_CONVERSATION_ID
GEN_AI_REQUEST_STREAM = gen_ai.GEN_AI_REQUEST_STREAM
GEN_AI_REQUEST_TEMPERATURE = gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_MAX_TOKENS = gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_USAGE_INPUT_TOKENS = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
# Part of gen_ai.usage.output_tokens, as cache reads are part of the input tokens.
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
GEN_AI_USAGE_COST = "gen_ai.usage.cost"  # not (yet) in the conventions
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
GEN_AI_TOKEN_TYPE = gen_ai.GEN_AI_TOKEN_TYPE
GEN_AI_INPUT_MESSAGES = gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES = gen_ai.GEN_AI_OUTPUT_MESSAGES
GEN_AI_SYSTEM_INSTRUCTIONS = gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
JSONRPC_REQUEST_ID = jsonrpc_attributes.JSONRPC_REQUEST_ID
ERROR_TYPE = error_attributes.ERROR_TYPE
EXCEPTION_TYPE = exception_attributes.EXCEPTION_TYPE
EXCEPTION_MESSAGE = exception_attributes.EXCEPTION_MESSAGE
DB_SYSTEM_NAME = db_attributes.DB_SYSTEM_NAME
DB_OPERATION_NAME = db_attributes.DB_OPERATION_NAME
DB_COLLECTION_NAME = db_attributes.DB_COLLECTION_NAME
DB_NAMESPACE = db_attributes.DB_NAMESPACE  # Redis: the database index, as a string
DB_OPERATION_BATCH_SIZE = db_attributes.DB_OPERATION_BATCH_SIZE
DB_RESPONSE_STATUS_CODE = db_attributes.DB_RESPONSE_STATUS_CODE
NETWORK_TRANSPORT = network.NETWORK_TRANSPORT
NETWORK_PROTOCOL_NAME = network.NETWORK_PROTOCOL_NAME
CLIENT_ADDRESS = client_attributes.CLIENT_ADDRESS
CLIENT_PORT = client_attributes.CLIENT_PORT
NETWORK_IO_DIRECTION = network.NETWORK_IO_DIRECTION
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT

EXAI_CORRELATION_ID = "exai.correlation_id"
# The per-call log record (app/call_log.py): "ok", an error code, or "no_answer"; seconds.
EXAI_CALL_OUTCOME = "exai.call.outcome"
EXAI_CALL_DURATION = "exai.call.duration"
EXAI_PRICE_TABLE_VERSION = "exai.price_table.version"
# rate_limited | backlog | session_busy | over_capacity | origin_not_allowed | host_not_allowed |
# too_many_connections | idle_timeout | not_reading
EXAI_REJECTION_REASON = "exai.rejection.reason"
EXAI_REJECTION_SCOPE = "exai.rejection.scope"  # handshake | session | global | provider
EXAI_STORAGE_BACKEND = "exai.storage.backend"  # redis | memory
EXAI_IGNORED_ARGUMENTS = "exai.ignored_arguments"
EXAI_REQUESTED_TOOL = "exai.requested_tool"  # span only: the name of an unknown tool
EXAI_SUPABASE_OUTBOX_BACKEND = "exai.supabase.outbox.backend"  # redis | memory
EXAI_SUPABASE_FAILURE_DISPOSITION = "exai.supabase.failure.disposition"  # retry | dead_letter
# Span only, with EXAI_SHARED_PROVIDER_LIMITS: which limit admitted or refused the call,
# shared | local (Redis away: the daemon's own).
EXAI_PROVIDER_LIMIT_MODE = "exai.provider_limit.mode"

# --- span events ------------------------------------------------------------------------------
# A call met Redis failing while taking or keeping a shared provider slot (with error.type): it
# goes on under the daemon's own limit.
EXAI_PROVIDER_LIMIT_FALLBACK = "exai.provider_limit.fallback"

# Value used on metrics for any model outside the price table, so labels stay bounded.
OTHER_VALUE = "_OTHER"
# Longest string value the daemon puts in an attribute (ids and names a client chose).
MAX_ATTRIBUTE_LENGTH = 256

# Circuit state as a number, so one gauge series per provider can be alerted on (2 = open).
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

# --- bucket advice (from the conventions) ------------------------------------------------------
MCP_DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
GEN_AI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
GEN_AI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
DB_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
# As db.client.operation.duration, plus 0.25 / 0.5 / 2.5: 0.5 is a bucket edge, so "slower than
# 500 ms" (SUPABASE_SLOW_SECS) is readable straight from the histogram.
SUPABASE_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SUPABASE_SLOW_SECS = 0.5

# --- metrics ----------------------------------------------------------------------------------
Kind = Literal["histogram", "counter", "updowncounter", "gauge"]


@dataclass(frozen=True)
class Metric:
    """One instrument as the daemon creates it; the Prometheus name follows from it."""

    name: str
    unit: str
    kind: Kind
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


METRICS: dict[str, Metric] = {}


def _metric(name: str, unit: str, kind: Kind, description: str,
            attributes: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None) -> str:
    """Register a metric and return its name, so recorders and tests keep using plain strings."""
    assert name not in METRICS, name
    METRICS[name] = Metric(name, unit, kind, description, attributes, buckets)
    return name


_TOOL_CALL = (MCP_METHOD_NAME, GEN_AI_TOOL_NAME, ERROR_TYPE, RPC_RESPONSE_STATUS_CODE,
              NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME, MCP_PROTOCOL_VERSION)
_REJECTION = (EXAI_REJECTION_REASON, EXAI_REJECTION_SCOPE)
_GEN_AI = (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
           GEN_AI_RESPONSE_MODEL, ERROR_TYPE)
_DB = (DB_SYSTEM_NAME, DB_OPERATION_NAME, ERROR_TYPE)
_SUPABASE = (DB_OPERATION_NAME, DB_COLLECTION_NAME, ERROR_TYPE)

MCP_SERVER_OPERATION_DURATION = _metric(
    mcp_metrics.MCP_SERVER_OPERATION_DURATION, "s", "histogram",
    "Duration of MCP-style requests as seen by the server.", _TOOL_CALL, MCP_DURATION_BUCKETS)
MCP_SERVER_SESSION_DURATION = _metric(
    mcp_metrics.MCP_SERVER_SESSION_DURATION, "s", "histogram",
    "Duration of client sessions (WebSocket connections after hello).", (), MCP_DURATION_BUCKETS)
MCP_CLIENT_OPERATION_DURATION = _metric(  # recorded by the MCP bridge, not the daemon
    mcp_metrics.MCP_CLIENT_OPERATION_DURATION, "s", "histogram",
    "Duration of MCP requests the bridge sent to the daemon.", _TOOL_CALL, MCP_DURATION_BUCKETS)
EXAI_SESSIONS_ACTIVE = _metric(
    "exai.mcp.server.sessions.active", "{session}", "updowncounter",
    "Client sessions currently open.")
EXAI_CALLS_IN_FLIGHT = _metric(
    "exai.mcp.server.calls.in_flight", "{call}", "updowncounter",
    "Tool calls currently executing.", (GEN_AI_TOOL_NAME,))
EXAI_REJECTIONS = _metric(
    "exai.mcp.server.rejections", "{request}", "counter",
    "Requests refused by a rate limit or a concurrency limit.", _REJECTION)
EXAI_WEBSOCKET_IO = _metric(
    "exai.websocket.io", "By", "counter",
    "Bytes of WebSocket text frames received and sent.", (NETWORK_IO_DIRECTION,))
GEN_AI_CLIENT_OPERATION_DURATION = _metric(
    gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION, "s", "histogram",
    "Duration of LLM provider calls.", _GEN_AI, GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_TOKEN_USAGE = _metric(
    gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "histogram",
    "Tokens used per LLM provider call, by token type.", (*_GEN_AI, GEN_AI_TOKEN_TYPE),
    GEN_AI_TOKEN_BUCKETS)
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK = _metric(
    gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, "s", "histogram",
    "Time from request to the first streamed chunk.", _GEN_AI, GEN_AI_DURATION_BUCKETS)
GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK = _metric(
    gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK, "s", "histogram",
    "Time between successive streamed chunks that carry output (answer or reasoning text), "
    "one measurement per such chunk after the first (recorded as it arrives: no error.type).",
    _GEN_AI, GEN_AI_DURATION_BUCKETS)
EXAI_GEN_AI_COST = _metric(
    "exai.gen_ai.cost", "USD", "counter",
    "Cost of LLM calls from the local price table.", (*_GEN_AI, EXAI_PRICE_TABLE_VERSION))
EXAI_GEN_AI_UNPRICED_CALLS = _metric(
    "exai.gen_ai.unpriced_calls", "{call}", "counter",
    "LLM calls whose model is not in the price table (cost unknown, not zero).", _GEN_AI)
EXAI_GEN_AI_CACHED_INPUT_TOKENS = _metric(
    "exai.gen_ai.cached_input_tokens", "{token}", "counter",
    "Input tokens served from the provider's cache (counted inside input).", _GEN_AI)
EXAI_GEN_AI_REASONING_OUTPUT_TOKENS = _metric(
    "exai.gen_ai.reasoning_output_tokens", "{token}", "counter",
    "Output tokens the model spent reasoning, as the provider reported them (counted inside "
    "output).", _GEN_AI)
EXAI_GEN_AI_FINISH_REASONS = _metric(
    "exai.gen_ai.finish_reasons", "{call}", "counter",
    "Completed LLM calls by finish reason.", (*_GEN_AI, GEN_AI_RESPONSE_FINISH_REASONS))
# State gauges carry no unit, so Prometheus keeps their plain names (the dimensionless unit "1"
# would add a _ratio suffix).
EXAI_CIRCUIT_BREAKER_STATE = _metric(
    "exai.gen_ai.circuit_breaker.state", "", "gauge",
    "Circuit breaker state per provider: 0 closed, 1 half_open, 2 open.", (GEN_AI_PROVIDER_NAME,))
DB_CLIENT_OPERATION_DURATION = _metric(
    _DB_DURATION, "s", "histogram", "Duration of storage operations.", _DB, DB_DURATION_BUCKETS)
EXAI_STORAGE_FALLBACK_ACTIVE = _metric(
    "exai.storage.fallback.active", "", "gauge",
    "1 while conversation threads are served from memory because Redis is down, else 0.",
    (EXAI_STORAGE_BACKEND,))
# The Supabase archive (app/persistence): no convention covers an outbox or Supabase itself.
EXAI_SUPABASE_OPERATION_DURATION = _metric(
    "exai.supabase.operation.duration", "s", "histogram",
    "Duration of Supabase (PostgREST) operations, by table and operation.", _SUPABASE,
    SUPABASE_DURATION_BUCKETS)
EXAI_SUPABASE_OPERATION_SLOW = _metric(
    "exai.supabase.operation.slow", "{operation}", "counter",
    f"Supabase operations slower than {SUPABASE_SLOW_SECS} s.", _SUPABASE)
EXAI_SUPABASE_OUTBOX_DELIVERY_FAILURES = _metric(
    "exai.supabase.outbox.delivery_failures", "{failure}", "counter",
    "Failed attempts to deliver an outbox write (retried, or dead-lettered).",
    (ERROR_TYPE, EXAI_SUPABASE_FAILURE_DISPOSITION))
EXAI_SUPABASE_OUTBOX_DROPPED = _metric(
    "exai.supabase.outbox.dropped", "{write}", "counter",
    "Writes dropped because the in-memory outbox (no Redis) was full.")
EXAI_SUPABASE_OUTBOX_DEPTH = _metric(
    "exai.supabase.outbox.depth", "{write}", "gauge",
    "Writes waiting in the Supabase outbox (pending or in flight).",
    (EXAI_SUPABASE_OUTBOX_BACKEND,))
EXAI_SUPABASE_OUTBOX_AGE = _metric(
    "exai.supabase.outbox.age", "s", "gauge",
    "Age of the oldest write waiting in the Supabase outbox (0 if none).",
    (EXAI_SUPABASE_OUTBOX_BACKEND,))
EXAI_SUPABASE_OUTBOX_DEAD_LETTERS = _metric(
    "exai.supabase.outbox.dead_letters", "{write}", "gauge",
    "Writes Supabase rejected, parked for a person to look at.", (EXAI_SUPABASE_OUTBOX_BACKEND,))
# Recorded by opentelemetry-instrumentation-system-metrics (otel/setup.py), listed for the
# dashboards' Prometheus names.
PROCESS_CPU_TIME = _metric(process_metrics.PROCESS_CPU_TIME, "s", "counter",
                           "CPU time of the process, by type (user | system).",
                           ("type",))  # the instrumentation's label, not the convention's cpu.mode
PROCESS_MEMORY_USAGE = _metric(process_metrics.PROCESS_MEMORY_USAGE, "By", "updowncounter",
                               "Resident memory of the process.")
PROCESS_OPEN_FILE_DESCRIPTOR_COUNT = _metric(
    process_metrics.PROCESS_OPEN_FILE_DESCRIPTOR_COUNT, "{file_descriptor}", "updowncounter",
    "Open file descriptors of the process.")
PROCESS_THREAD_COUNT = _metric(process_metrics.PROCESS_THREAD_COUNT, "{thread}", "updowncounter",
                               "Threads of the process.")

# --- Prometheus names -------------------------------------------------------------------------
# What the collector's prometheusremotewrite exporter (UnderscoreEscapingWithSuffixes) appends for
# a unit; an annotation in braces ({token}) adds nothing, any other unit (USD) is kept as is.
_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def prometheus_name(name: str) -> str:
    """The Prometheus series name of a catalogued metric (a histogram's base, before _bucket).

    Dots become underscores, the unit becomes a suffix, and a monotonic counter ends in _total:
    ``exai.gen_ai.cost`` in USD -> ``exai_gen_ai_cost_USD_total``.
    """
    metric = METRICS[name]
    prom = re.sub(r"[^a-zA-Z0-9_]", "_", metric.name)
    unit = "" if metric.unit.startswith("{") else _UNIT_SUFFIXES.get(metric.unit, metric.unit)
    if unit and not prom.endswith(f"_{unit}"):
        prom += f"_{unit}"
    return prom + "_total" if metric.kind == "counter" else prom


def label_name(attribute: str) -> str:
    """The label an attribute becomes in Prometheus, and in Loki's structured metadata (both
    replace what a label name cannot hold with underscores): ``exai.call.outcome`` ->
    ``exai_call_outcome``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


def prometheus_series() -> set[str]:
    """Every series name the catalogue produces in Prometheus (histograms as their three)."""
    series = set()
    for metric in METRICS.values():
        prom = prometheus_name(metric.name)
        series |= ({f"{prom}_bucket", f"{prom}_sum", f"{prom}_count"}
                   if metric.kind == "histogram" else {prom})
    return series
