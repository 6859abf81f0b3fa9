"""The Prometheus names the dashboards query, confirmed against the live test stack.

The daemon's own metrics are derived from the telemetry catalogue (otel/names.py,
``prometheus_name``: what the collector's remote write makes of each instrument). The rest are
outside it: the span_metrics connector adds ``traces_span_metrics_*`` with the histogram in
seconds; the collector's own metrics are scraped without a ``_total`` suffix.
tests/dashboards/test_live.py fails when any of these stops returning data.
"""

from __future__ import annotations

from app.providers import table as provider_table
from otel import names as otel
from otel.names import label_name, prometheus_name

# --- span metrics (100 % of spans, before tail sampling) -----------------------------------------
SPAN_CALLS = "traces_span_metrics_calls_total"
SPAN_DURATION_BUCKET = "traces_span_metrics_duration_seconds_bucket"
ERROR = 'status_code="STATUS_CODE_ERROR"'
# A tool call is the daemon's SERVER span "tools/call <tool>".
TOOL_CALLS = 'span_kind="SPAN_KIND_SERVER", mcp_method_name="tools/call", gen_ai_tool_name=~"$tool"'
# A provider call is its CLIENT span "chat <model>" (the variables filter provider and model).
PROVIDER_CALLS = ('span_kind="SPAN_KIND_CLIENT", gen_ai_provider_name!="", '
                  'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"')

# --- daemon metrics (derived from the catalogue, otel/names.py) -----------------------------------
DAEMON_JOB = 'job="exai-daemon"'
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


PROVIDER_FILTER = 'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"'

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

# --- logs and traces ------------------------------------------------------------------------------
LOG_STREAM = '{service_name="exai-daemon"}'
# The per-call records (app/call_log.py): only they carry exai.call.outcome.
CALL_OUTCOME = label_name(otel.EXAI_CALL_OUTCOME)
CALL_RECORDS = f'{LOG_STREAM} | {CALL_OUTCOME} != ""'
FAILED_CALL_RECORDS = f'{CALL_RECORDS} | {CALL_OUTCOME} != "ok"'

# Providers as the daemon names them (gen_ai.provider.name), for the per-component cards.
PROVIDERS = {entry.label: entry.otel_name for entry in provider_table.PROVIDERS}
