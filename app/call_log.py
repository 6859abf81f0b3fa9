"""One log record per finished tool call, so the logs answer "what did this request do?" for
every call, not only the failed ones, and join the trace through its trace and span ids.

Pure: the session logs what ``call_record`` returns, inside the call's SERVER span. Names, codes
and numbers only; never prompt or answer text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from otel import names

from .errors import CALLER_ERRORS, SESSION_LIMIT_ERRORS, ErrorCode
from .providers.table import PROVIDERS

OK = "ok"
# No answer could be sent: the client closed the connection, or the daemon stopped, mid-call.
NO_ANSWER = "no_answer"
_OTEL_PROVIDER = {entry.key: entry.otel_name for entry in PROVIDERS}
# The reply's ``usage`` keys (app/tools/chat.py) and the attributes they are logged as.
_USAGE = {"input_tokens": names.GEN_AI_USAGE_INPUT_TOKENS,
          "output_tokens": names.GEN_AI_USAGE_OUTPUT_TOKENS,
          "cached_input_tokens": names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
          "reasoning_tokens": names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS}


@dataclass(frozen=True)
class CallRecord:
    level: int
    message: str  # the short console line
    attributes: dict[str, Any]  # what the OTLP log record carries besides the message


def call_record(tool: str, request_id: str, reply: dict[str, Any] | None, error_type: str | None,
                duration_secs: float) -> CallRecord:
    """The record for a call that ended with ``reply`` (None when no answer could be sent): INFO
    when it succeeded, WARNING when the caller caused the failure (as the SLOs count it), ERROR
    otherwise."""
    outcome, level = _outcome(reply, error_type)
    attributes: dict[str, Any] = {
        names.MCP_METHOD_NAME: "tools/call", names.GEN_AI_TOOL_NAME: tool,
        names.JSONRPC_REQUEST_ID: request_id, names.EXAI_CALL_OUTCOME: outcome,
        names.EXAI_CALL_DURATION: round(duration_secs, 6)}
    if error_type:
        attributes[names.ERROR_TYPE] = error_type
    attributes.update(_provider_attributes(reply or {}))
    message = f"call {request_id} {tool} {outcome} in {duration_secs * 1000:.0f} ms"
    return CallRecord(level, message, attributes)


def _outcome(reply: dict[str, Any] | None, error_type: str | None) -> tuple[str, int]:
    if reply is None:
        return NO_ANSWER, logging.WARNING
    if reply.get("ok"):
        return OK, logging.INFO
    code = str((reply.get("error") or {}).get("code", ErrorCode.INTERNAL_ERROR))
    caused_by_caller = code in CALLER_ERRORS or error_type in SESSION_LIMIT_ERRORS
    return code, logging.WARNING if caused_by_caller else logging.ERROR


def _provider_attributes(reply: dict[str, Any]) -> dict[str, Any]:
    """Provider, model, tokens and cost from a chat reply's metadata (or a failure's details)."""
    metadata = reply.get("metadata") or (reply.get("error") or {}).get("details") or {}
    attributes: dict[str, Any] = {}
    provider = _OTEL_PROVIDER.get(str(metadata.get("provider")))
    if provider:
        attributes[names.GEN_AI_PROVIDER_NAME] = provider
    if isinstance(metadata.get("model"), str):
        attributes[names.GEN_AI_RESPONSE_MODEL] = metadata["model"][:names.MAX_ATTRIBUTE_LENGTH]
    usage = metadata.get("usage") or {}
    for key, attribute in _USAGE.items():
        if isinstance(usage.get(key), int):
            attributes[attribute] = usage[key]
    if isinstance(metadata.get("cost_usd"), int | float):
        attributes[names.GEN_AI_USAGE_COST] = metadata["cost_usd"]
    return attributes
