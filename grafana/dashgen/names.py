"""The Prometheus names the dashboards query, confirmed against the live test stack.

How they arise (see collector-config/config.yaml): the daemon's OTel metrics reach Prometheus by
the collector's remote write with dots turned into underscores and unit suffixes added
(``gen_ai.client.token.usage`` -> ``gen_ai_client_token_usage``; ``exai.gen_ai.cost`` in USD ->
``exai_gen_ai_cost_USD_total``); the span_metrics connector adds ``traces_span_metrics_*`` with the
histogram in seconds; the collector's own metrics are scraped without a ``_total`` suffix.
tests/dashboards/test_live.py fails when any of these stops returning data.
"""

from __future__ import annotations

# --- span metrics (100 % of spans, before tail sampling) -----------------------------------------
SPAN_CALLS = "traces_span_metrics_calls_total"
SPAN_DURATION_BUCKET = "traces_span_metrics_duration_seconds_bucket"
ERROR = 'status_code="STATUS_CODE_ERROR"'
# A tool call is the daemon's SERVER span "tools/call <tool>".
TOOL_CALLS = 'span_kind="SPAN_KIND_SERVER", mcp_method_name="tools/call", gen_ai_tool_name=~"$tool"'
# A provider call is its CLIENT span "chat <model>" (the variables filter provider and model).
PROVIDER_CALLS = ('span_kind="SPAN_KIND_CLIENT", gen_ai_provider_name!="", '
                  'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"')

# --- daemon metrics --------------------------------------------------------------------------------
DAEMON_JOB = 'job="exai-daemon"'
TARGET_INFO = "target_info"
MCP_DURATION = "mcp_server_operation_duration_seconds"
SESSIONS_ACTIVE = "exai_mcp_server_sessions_active"
CALLS_IN_FLIGHT = "exai_mcp_server_calls_in_flight"
REJECTIONS = "exai_mcp_server_rejections_total"
WEBSOCKET_BYTES = "exai_websocket_io_bytes_total"

GENAI_DURATION = "gen_ai_client_operation_duration_seconds"
GENAI_TOKENS = "gen_ai_client_token_usage"
GENAI_TTFC = "gen_ai_client_operation_time_to_first_chunk_seconds"
GENAI_COST = "exai_gen_ai_cost_USD_total"
GENAI_UNPRICED = "exai_gen_ai_unpriced_calls_total"
GENAI_CACHED_TOKENS = "exai_gen_ai_client_cached_input_tokens_total"
GENAI_FINISH_REASONS = "exai_gen_ai_client_finish_reasons_total"
# State gauges carry no unit, so no suffix is added (a unit "1" would add _ratio).
CIRCUIT_STATE = "exai_gen_ai_circuit_breaker_state"
STORAGE_FALLBACK = "exai_storage_fallback_active"


def by_name_regex(name_regex: str, matchers: str = "") -> str:
    """A selector matching metric names by regex, plus optional label matchers."""
    return f'{{__name__=~"{name_regex}"{", " + matchers if matchers else ""}}}'


PROVIDER_FILTER = 'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"'

DB_DURATION = "db_client_operation_duration_seconds"
REDIS = 'db_system_name="redis"'

SUPABASE_DURATION = "exai_supabase_operation_duration_seconds"
OUTBOX_DEPTH = "exai_supabase_outbox_depth"
OUTBOX_AGE = "exai_supabase_outbox_age_seconds"
OUTBOX_DEAD_LETTERS = "exai_supabase_outbox_dead_letters"
OUTBOX_FAILURES = "exai_supabase_outbox_delivery_failures_total"
OUTBOX_DROPPED = "exai_supabase_outbox_dropped_total"

PROCESS_CPU = "process_cpu_time_seconds_total"
PROCESS_MEMORY = "process_memory_usage_bytes"
PROCESS_FDS = "process_open_file_descriptor_count"
PROCESS_THREADS = "process_thread_count"

# --- collector self-metrics (scraped from :8888) ---------------------------------------------------
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

# --- logs and traces --------------------------------------------------------------------------------
LOG_STREAM = '{service_name="exai-daemon"}'

# Providers as the daemon names them (gen_ai.provider.name), for the per-component cards.
PROVIDERS = {"Kimi": "moonshot_ai", "GLM": "z_ai"}
