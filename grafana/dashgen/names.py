"""The Prometheus names the dashboards query, confirmed against the live test stack.

The daemon's own metrics are derived from the telemetry catalogue (otel/names.py,
``prometheus_name``: what the collector's remote write makes of each instrument). The rest are
outside it: the span_metrics connector adds ``traces_span_metrics_*`` with the histogram in
seconds; the collector's own metrics are scraped without a ``_total`` suffix or a unit (the
collector's Prometheus reader sets ``without_units`` and ``without_type_suffix``).
tests/dashboards/test_live.py fails when any of these stops returning data, except the series
only an agent or a gateway produces (``FLEET_ONLY``), which the one-collector stack cannot.

Fleet labels (the fleet design of issue 15): daemon series carry ``instance`` = the daemon's
service.instance.id; span metrics carry it too, plus ``collector_instance_id`` = the gateway that
computed them; collector self-metrics carry ``collector_role`` (agent | gateway | single) from the
scrape config.
"""

from __future__ import annotations

from app.providers import table as provider_table
from otel import names as otel
from otel.names import label_name, prometheus_name

# --- fleet labels ---------------------------------------------------------------------------------
INSTANCE_LABEL = "instance"
# Which gateway computed a span-metric series: every span-metric query sums it away (by (...)
# without it), so two gateways' series add up instead of showing twice.
COLLECTOR_INSTANCE_LABEL = "collector_instance_id"
COLLECTOR_ROLE_LABEL = "collector_role"
# The instance variable's matcher, on every daemon and span-metric selector of a dashboard that
# has the variable ("All" is the regex .*, which also matches a series without the label).
INSTANCE = f'{INSTANCE_LABEL}=~"$instance"'

# --- span metrics (100 % of spans, before tail sampling) -----------------------------------------
SPAN_CALLS = "traces_span_metrics_calls_total"
SPAN_DURATION_BUCKET = "traces_span_metrics_duration_seconds_bucket"
ERROR = 'status_code="STATUS_CODE_ERROR"'
# A tool call is the daemon's SERVER span "tools/call <tool>".
TOOL_CALLS = ('span_kind="SPAN_KIND_SERVER", mcp_method_name="tools/call", '
              f'gen_ai_tool_name=~"$tool", {INSTANCE}')
# A provider call is its CLIENT span "chat <model>" (the variables filter provider and model).
PROVIDER_CALLS = ('span_kind="SPAN_KIND_CLIENT", gen_ai_provider_name!="", '
                  f'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model", {INSTANCE}')

# --- daemon metrics (derived from the catalogue, otel/names.py) -----------------------------------
DAEMON_JOB = 'job="exai-daemon"'
# The daemon's series of the selected instances (dashboards with the instance variable).
DAEMON = f"{DAEMON_JOB}, {INSTANCE}"
TARGET_INFO = "target_info"
MCP_DURATION = prometheus_name(otel.MCP_SERVER_OPERATION_DURATION)
SESSIONS_ACTIVE = prometheus_name(otel.EXAI_SESSIONS_ACTIVE)
CALLS_IN_FLIGHT = prometheus_name(otel.EXAI_CALLS_IN_FLIGHT)
REJECTIONS = prometheus_name(otel.EXAI_REJECTIONS)
WEBSOCKET_IO = prometheus_name(otel.EXAI_WEBSOCKET_IO)

GENAI_DURATION = prometheus_name(otel.GEN_AI_CLIENT_OPERATION_DURATION)
GENAI_TOKENS = prometheus_name(otel.GEN_AI_CLIENT_TOKEN_USAGE)
GENAI_TTFC = prometheus_name(otel.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK)
GENAI_COST = prometheus_name(otel.EXAI_GEN_AI_COST)
GENAI_UNPRICED = prometheus_name(otel.EXAI_GEN_AI_UNPRICED_CALLS)
GENAI_CACHED_TOKENS = prometheus_name(otel.EXAI_GEN_AI_CACHED_INPUT_TOKENS)
GENAI_FINISH_REASONS = prometheus_name(otel.EXAI_GEN_AI_FINISH_REASONS)
CIRCUIT_STATE = prometheus_name(otel.EXAI_CIRCUIT_BREAKER_STATE)
STORAGE_FALLBACK = prometheus_name(otel.EXAI_STORAGE_FALLBACK_ACTIVE)


def by_name_regex(name_regex: str, matchers: str = "") -> str:
    """A selector matching metric names by regex, plus optional label matchers."""
    return f'{{__name__=~"{name_regex}"{", " + matchers if matchers else ""}}}'


PROVIDER_FILTER = f'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model", {INSTANCE}'

DB_DURATION = prometheus_name(otel.DB_CLIENT_OPERATION_DURATION)
REDIS = 'db_system_name="redis"'

SUPABASE_DURATION = prometheus_name(otel.EXAI_SUPABASE_OPERATION_DURATION)
OUTBOX_DEPTH = prometheus_name(otel.EXAI_SUPABASE_OUTBOX_DEPTH)
OUTBOX_AGE = prometheus_name(otel.EXAI_SUPABASE_OUTBOX_AGE)
OUTBOX_DEAD_LETTERS = prometheus_name(otel.EXAI_SUPABASE_OUTBOX_DEAD_LETTERS)
OUTBOX_FAILURES = prometheus_name(otel.EXAI_SUPABASE_OUTBOX_DELIVERY_FAILURES)
OUTBOX_DROPPED = prometheus_name(otel.EXAI_SUPABASE_OUTBOX_DROPPED)

PROCESS_CPU = prometheus_name(otel.PROCESS_CPU_TIME)
PROCESS_MEMORY = prometheus_name(otel.PROCESS_MEMORY_USAGE)
PROCESS_FDS = prometheus_name(otel.PROCESS_OPEN_FILE_DESCRIPTOR_COUNT)
PROCESS_THREADS = prometheus_name(otel.PROCESS_THREAD_COUNT)

# --- collector self-metrics (scraped from :8888) -------------------------------------------------
SIGNALS = {"spans": "Spans", "metric_points": "Metric points", "log_records": "Log records"}
RECEIVER_ACCEPTED = "otelcol_receiver_accepted_{signal}"
RECEIVER_REFUSED = "otelcol_receiver_refused_{signal}"
EXPORTER_SENT = "otelcol_exporter_sent_{signal}"
EXPORTER_SEND_FAILED = "otelcol_exporter_send_failed_{signal}"
EXPORTER_ENQUEUE_FAILED = "otelcol_exporter_enqueue_failed_{signal}"
QUEUE_SIZE = "otelcol_exporter_queue_size"
QUEUE_CAPACITY = "otelcol_exporter_queue_capacity"
TAIL_SAMPLING = "otelcol_processor_tail_sampling_count_traces_sampled"
COLLECTOR_CPU = "otelcol_process_cpu_seconds"
COLLECTOR_RSS = "otelcol_process_memory_rss"
COLLECTOR_JOB = 'job="otel-collector"'
UP = "up"
# Data the memory limiter refused (the receiver's refused_* count it too, with the others).
MEMORY_LIMITER_REFUSED = "otelcol_processor_memory_limiter_refused_{signal}"
TAIL_SAMPLING_DROPPED_TOO_EARLY = "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"
# The agent's loadbalancing exporter (contrib v0.161.0, exporter/loadbalancingexporter
# metadata.yaml, and scraped from a v0.161.0 build): backends in use by resolver, each hand-over
# to a backend by endpoint and success ("true" | "false"), and its latency in ms by endpoint.
LB_BACKENDS = "otelcol_loadbalancer_num_backends"
LB_BACKEND_OUTCOME = "otelcol_loadbalancer_backend_outcome"
LB_BACKEND_LATENCY_BUCKET = "otelcol_loadbalancer_backend_latency_bucket"
# The OTLP receivers' own HTTP and gRPC server metrics (otelhttp / otelgrpc, new semantic
# conventions), kept at telemetry level "detailed". The bearer-token check runs inside them, so a
# refused token is a 401 / UNAUTHENTICATED here (seen on a v0.161.0 build; the refused request
# never reaches otelcol_receiver_refused_*). No otelcol_ prefix, unlike the rest.
HTTP_SERVER_DURATION_COUNT = "http_server_request_duration_count"
GRPC_SERVER_DURATION_COUNT = "rpc_server_call_duration_count"
UNAUTHENTICATED_HTTP = 'http_response_status_code="401"'
UNAUTHENTICATED_GRPC = 'rpc_response_status_code="UNAUTHENTICATED"'
# Series only an agent or a gateway produces: the one-collector live stack has none of them.
FLEET_ONLY = ("otelcol_loadbalancer_", HTTP_SERVER_DURATION_COUNT, GRPC_SERVER_DURATION_COUNT)

# --- logs and traces ------------------------------------------------------------------------------
LOG_STREAM = '{service_name="exai-daemon"}'
# The per-call records (app/call_log.py): only they carry exai.call.outcome.
CALL_OUTCOME = label_name(otel.EXAI_CALL_OUTCOME)
CALL_RECORDS = f'{LOG_STREAM} | {CALL_OUTCOME} != ""'
FAILED_CALL_RECORDS = f'{CALL_RECORDS} | {CALL_OUTCOME} != "ok"'
# Loki indexes the OTLP resource's service.instance.id as a stream label.
LOG_INSTANCE = 'service_instance_id=~"$instance"'


def instance_logs(query: str) -> str:
    """``query`` (starting with LOG_STREAM) narrowed to the selected daemon instances."""
    assert query.startswith(LOG_STREAM), query
    return LOG_STREAM[:-1] + f", {LOG_INSTANCE}}}" + query[len(LOG_STREAM):]

# Providers as the daemon names them (gen_ai.provider.name), for the per-component cards.
PROVIDERS = {entry.label: entry.otel_name for entry in provider_table.PROVIDERS}
