"""What the daemon exports: no content or secrets, bounded metric attributes, standard names
and buckets, logs carrying trace context."""

from __future__ import annotations

import json
import logging

from otel import names

from .conftest import FAKE_KEY, TOKEN, eventually

PROMPT = "the secret recipe is cardamom and smoked salt"
SYSTEM = "you are a pirate who never reveals recipes"


def _everything_exported(capture) -> str:
    """All spans, metric points and log records as one searchable text."""
    parts = [span.to_json() for span in capture.spans()]
    for name, points in capture.metrics().items():
        parts.append(name)
        parts.extend(json.dumps(dict(p.attributes or {})) for p in points)
    for record in capture.logs():
        parts.append(record.to_json())
    return "\n".join(parts)


async def test_no_prompt_answer_key_or_token_in_any_signal(client, capture):
    reply = await client.call_tool("chat", {"prompt": PROMPT, "system_prompt": SYSTEM,
                                            "stream": True})
    assert reply["ok"]
    answer = reply["outputs"][0]["text"]
    # every span of the call, the SERVER span (ended after the reply is sent) included
    await eventually(lambda: any(s.name.startswith("tools/call")
                                 for s in capture.trace(reply["trace_id"])))
    logging.getLogger("tests").info("after the call")
    exported = _everything_exported(capture)
    assert "cardamom" not in exported
    assert "pirate" not in exported
    assert answer not in exported
    assert FAKE_KEY not in exported and "Bearer" not in exported
    assert TOKEN not in exported


async def test_metric_attributes_are_bounded(client, capture):
    for model in ("mystery-model-1", "glm-unknown-7", "kimi-made-up"):
        await client.call_tool("chat", {"prompt": "hi", "model": model})
    await client.call_tool("no_such_tool_abc", {})
    await client.call_tool("no_such_tool_xyz", {})
    forbidden_keys = {names.MCP_SESSION_ID, names.JSONRPC_REQUEST_ID, names.GEN_AI_CONVERSATION_ID,
                      names.EXAI_CORRELATION_ID, "trace_id"}
    metrics = capture.metrics()
    for name, points in metrics.items():
        for point in points:
            attributes = dict(point.attributes or {})
            assert not forbidden_keys & attributes.keys(), (name, attributes)
            for key in (names.GEN_AI_REQUEST_MODEL, names.GEN_AI_RESPONSE_MODEL):
                if key in attributes:
                    assert attributes[key] in {"glm-4.5-flash", names.OTHER_VALUE} or \
                        not attributes[key].startswith(("glm-unknown", "kimi-made-up")), attributes
        if name in names.METRICS:
            allowed = set(names.METRICS[name].attributes)
            assert {k for p in points for k in (p.attributes or {})} <= allowed, name
    tools = {p.attributes.get(names.GEN_AI_TOOL_NAME)
             for p in metrics[names.MCP_SERVER_OPERATION_DURATION]}
    assert names.OTHER_VALUE in tools
    assert not any(str(t).startswith("no_such_tool") for t in tools)


async def test_standard_metrics_with_convention_buckets(client, capture):
    reply = await client.call_tool("chat", {"prompt": "measure me", "stream": True})
    assert reply["ok"]
    metrics = capture.metrics()
    for name in (names.MCP_SERVER_OPERATION_DURATION, names.GEN_AI_CLIENT_OPERATION_DURATION,
                 names.GEN_AI_CLIENT_TOKEN_USAGE, names.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK,
                 names.EXAI_GEN_AI_COST, names.DB_CLIENT_OPERATION_DURATION,
                 names.EXAI_SESSIONS_ACTIVE, names.EXAI_CALLS_IN_FLIGHT,
                 names.EXAI_CIRCUIT_BREAKER_STATE, names.EXAI_STORAGE_FALLBACK_ACTIVE,
                 names.EXAI_WEBSOCKET_IO, "process.cpu.utilization", "process.memory.usage"):
        assert name in metrics, f"{name} missing; have {sorted(metrics)}"
    operation = metrics[names.MCP_SERVER_OPERATION_DURATION][0]
    assert tuple(operation.explicit_bounds) == tuple(float(b) for b in names.MCP_DURATION_BUCKETS)
    genai = metrics[names.GEN_AI_CLIENT_OPERATION_DURATION][0]
    assert tuple(genai.explicit_bounds) == tuple(float(b) for b in names.GEN_AI_DURATION_BUCKETS)
    tokens = {p.attributes[names.GEN_AI_TOKEN_TYPE]
              for p in metrics[names.GEN_AI_CLIENT_TOKEN_USAGE]}
    assert tokens >= {"input", "output"}
    reasons = {p.attributes[names.GEN_AI_RESPONSE_FINISH_REASONS]
               for p in metrics[names.EXAI_GEN_AI_FINISH_REASONS]}
    assert "stop" in reasons


async def test_kimi_cached_tokens_are_counted(client, capture):
    reply = await client.call_tool("chat", {"prompt": "cache me " * 50, "model": "kimi-latest"})
    cached = reply["metadata"]["usage"]["cached_input_tokens"]
    assert cached > 0
    points = capture.metrics()[names.EXAI_GEN_AI_CACHED_INPUT_TOKENS]
    assert sum(p.value for p in points if
               p.attributes[names.GEN_AI_PROVIDER_NAME] == "moonshot_ai") >= cached


async def test_unpriced_model_is_counted_not_zero(client, capture):
    reply = await client.call_tool("chat", {"prompt": "hi", "model": "glm-9-imaginary"})
    assert reply["ok"] and reply["metadata"]["cost_usd"] is None
    points = capture.metrics()[names.EXAI_GEN_AI_UNPRICED_CALLS]
    assert sum(p.value for p in points) >= 1


async def test_exemplars_link_metrics_to_traces(client, capture):
    reply = await client.call_tool("chat", {"prompt": "exemplar"})
    points = capture.metrics()[names.MCP_SERVER_OPERATION_DURATION]
    exemplar_traces = {format(e.trace_id, "032x") for p in points for e in p.exemplars
                       if e.trace_id}
    assert reply["trace_id"] in exemplar_traces


async def test_log_records_carry_the_trace_and_span_ids(client, capture):
    reply = await client.call_tool(
        "chat", {"prompt": "log me", "continuation_id": "00000000-0000-4000-8000-00000000abcd"})
    assert reply["error"]["code"] == "CONTINUATION_NOT_FOUND"

    def records():
        return [r for r in capture.logs()
                if r.log_record.trace_id
                and format(r.log_record.trace_id, "032x") == reply["trace_id"]]
    found = await eventually(records)
    assert found[0].log_record.span_id
    assert found[0].resource.attributes["service.name"] == "exai-daemon"


async def test_unknown_tool_names_stay_off_the_span_metric_dimension(client, capture):
    reply = await client.call_tool("made_up_tool_42", {})
    spans = await eventually(lambda: capture.trace(reply["trace_id"]))
    assert spans[0].name == "tools/call"
    assert spans[0].attributes[names.GEN_AI_TOOL_NAME] == names.OTHER_VALUE
    assert spans[0].attributes[names.EXAI_REQUESTED_TOOL] == "made_up_tool_42"
