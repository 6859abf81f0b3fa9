"""Every telemetry name the daemon emits, in one place.

Standard names come from the OpenTelemetry semantic conventions (MCP, GenAI, database, process).
Where no convention exists the name lives under the ``exai.`` prefix. Dashboards, alert rules and
tests refer to the Prometheus forms of these names, so renaming anything here is a breaking change.
"""

from __future__ import annotations

SERVICE_NAME = "exai-daemon"
INSTRUMENTATION_SCOPE = "exai"

# --- attributes -------------------------------------------------------------------------------
MCP_METHOD_NAME = "mcp.method.name"
MCP_SESSION_ID = "mcp.session.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
JSONRPC_REQUEST_ID = "jsonrpc.request.id"
NETWORK_TRANSPORT = "network.transport"
NETWORK_IO_DIRECTION = "network.io.direction"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
DB_SYSTEM_NAME = "db.system.name"
DB_OPERATION_NAME = "db.operation.name"

EXAI_CORRELATION_ID = "exai.correlation_id"
EXAI_REQUEST_ID = "exai.request_id"
EXAI_PRICE_TABLE_VERSION = "exai.price_table.version"
# rate_limited | over_capacity | origin_not_allowed | host_not_allowed | too_many_connections |
# idle_timeout | not_reading
EXAI_REJECTION_REASON = "exai.rejection.reason"
EXAI_REJECTION_SCOPE = "exai.rejection.scope"  # handshake | session | global | provider
EXAI_STORAGE_BACKEND = "exai.storage.backend"  # redis | memory
EXAI_CIRCUIT_STATE = "exai.circuit.state"  # closed | half_open | open
EXAI_IGNORED_ARGUMENTS = "exai.ignored_arguments"
EXAI_REQUESTED_TOOL = "exai.requested_tool"  # span only: the name of an unknown tool

# Value used on metrics for any model outside the price table, so labels stay bounded.
OTHER_VALUE = "_OTHER"

# --- metrics ----------------------------------------------------------------------------------
MCP_SERVER_OPERATION_DURATION = "mcp.server.operation.duration"
MCP_SERVER_SESSION_DURATION = "mcp.server.session.duration"
MCP_CLIENT_OPERATION_DURATION = "mcp.client.operation.duration"
EXAI_SESSIONS_ACTIVE = "exai.mcp.server.sessions.active"
EXAI_CALLS_IN_FLIGHT = "exai.mcp.server.calls.in_flight"
EXAI_REJECTIONS = "exai.mcp.server.rejections"
EXAI_WEBSOCKET_BYTES = "exai.websocket.io"
GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
EXAI_GEN_AI_COST = "exai.gen_ai.cost"
EXAI_GEN_AI_UNPRICED_CALLS = "exai.gen_ai.unpriced_calls"
EXAI_GEN_AI_CACHED_INPUT_TOKENS = "exai.gen_ai.client.cached_input_tokens"
EXAI_GEN_AI_FINISH_REASONS = "exai.gen_ai.client.finish_reasons"
EXAI_CIRCUIT_BREAKER_STATE = "exai.gen_ai.circuit_breaker.state"
DB_CLIENT_OPERATION_DURATION = "db.client.operation.duration"
EXAI_STORAGE_FALLBACK_ACTIVE = "exai.storage.fallback.active"

# Bucket advice from the conventions.
MCP_DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
GEN_AI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
GEN_AI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
DB_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)

# Circuit state as a number, so one gauge series per provider can be alerted on (2 = open).
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

# State gauges (circuit state, fallback active) carry no unit, so Prometheus keeps their plain
# names; the dimensionless unit "1" would add a _ratio suffix the alert rules do not expect.
STATE_GAUGE_UNIT = ""
