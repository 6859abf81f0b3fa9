"""Redaction as the collector's second line of defence, proven on what the backends receive.

Spans and logs full of secrets and GenAI content go into the real collector; the Tempo and Loki
stand-ins must get them with keys, tokens and content removed or masked. A second collector with
EXAI_OTELCOL_GENAI_CONTENT=keep shows the operator toggle keeps content but still masks secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import Status, StatusCode

from tests.harness.collector import StandIn, main_collector, standin
from tests.harness.procs import wait_until

from .conftest import Stack
from .telemetry import send_logs, send_span, unique_service


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Fake secrets in the shapes the collector must recognise, built here so that no key-like literal
# sits in the repository.
SK_KEY = "sk-" + "test" + "X" * 24
BEARER = "Bearer abc.DEF-123_tokenvalue987"
JWT = ".".join([_base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
                _base64url(json.dumps({"sub": "test-user"}).encode()),
                _base64url(b"signature-value-for-test")])
GLM_KEY = "0123456789abcdef" * 2 + ".AbCdEfGhIjKlMnOp"  # Z.ai keys are <id>.<secret>
PROMPT = "PROMPT-TEXT: tell me the launch codes"
ANSWER = "ANSWER-TEXT: the codes are 0000"
SYSTEM = "SYSTEM-TEXT: you are a helpful assistant"
SECRETS = [SK_KEY, "abc.DEF-123_tokenvalue987", JWT, GLM_KEY]
CONTENT = [PROMPT, ANSWER, SYSTEM]


def _span_attributes() -> dict[str, object]:
    return {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "moonshot_ai",
        "gen_ai.request.model": "kimi-k2-0905-preview",
        "http.request.header.authorization": [BEARER],
        "http.request.header.cookie": ["session=abcdef"],
        "exai.debug.note": f"retrying with key {SK_KEY}",
        "exai.debug.upstream_header": f"Authorization: {BEARER}",
        "exai.debug.jwt": JWT,
        "exai.debug.glm": f"key={GLM_KEY}",
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [PROMPT]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [ANSWER]}]),
        "gen_ai.system_instructions": SYSTEM,
        "gen_ai.usage.input_tokens": 12,
    }


def _send_everything(stack_grpc: str, stack_http: str, service: str) -> str:
    trace_id = send_span(
        stack_grpc, service, "chat kimi-k2-0905-preview", _span_attributes(),
        status=Status(StatusCode.ERROR, f"upstream said 401 for key {SK_KEY}"),
        events=[("gen_ai.client.inference.operation.details",
                 {"gen_ai.input.messages": PROMPT, "exai.debug": BEARER})],
    )
    # A span whose name and status quote credentials (transform/scrub's job).
    send_span(stack_grpc, service, f"GET /v1/models?access_token={JWT}", {},
              status=Status(StatusCode.ERROR, f"401 with {BEARER} and {GLM_KEY}"))
    send_logs(stack_http, service, [
        (f"calling upstream with Authorization: {BEARER} and {SK_KEY}",
         {"exai.debug.jwt": JWT, "http.request.header.authorization": BEARER}, None),
        ("inference details",
         {"gen_ai.input.messages": PROMPT, "gen_ai.output.messages": ANSWER,
          "gen_ai.system_instructions": SYSTEM}, "gen_ai.client.inference.operation.details"),
        ({"content": PROMPT, "note": f"key {SK_KEY}", "gen_ai.output.messages": ANSWER},
         {"gen_ai.provider.name": "z_ai"}, "gen_ai.user.message"),
    ])
    return trace_id


def _delivered(tempo: StandIn, loki: StandIn, service: str) -> tuple[list[dict], list[dict]]:
    spans = [s for s in tempo.spans() if s["resource"].get("service.name") == service]
    logs = [r for r in loki.log_records() if r["resource"].get("service.name") == service]
    return spans, logs


def _wait_delivered(tempo: StandIn, loki: StandIn, service: str) -> tuple[list[dict], list[dict]]:
    wait_until(lambda: all(len(x) >= n
                           for x, n in zip(_delivered(tempo, loki, service), (2, 3), strict=True)),
               timeout=60, what=f"2 spans and 3 log records of {service} at the stand-ins")
    return _delivered(tempo, loki, service)


def test_secrets_and_content_never_reach_tempo_or_loki(stack: Stack) -> None:
    service = unique_service("redact")
    _send_everything(stack.collector.otlp_grpc, stack.collector.otlp_http, service)
    spans, logs = _wait_delivered(stack.tempo, stack.loki, service)

    delivered = json.dumps(spans) + json.dumps(logs)
    for secret in SECRETS + CONTENT:
        assert secret not in delivered, f"{secret[:12]}... reached a backend"

    span = next(s for s in spans if s["name"] == "chat kimi-k2-0905-preview")
    assert span["status"]["message"] == "upstream said 401 for key ****"
    named = next(s for s in spans if s is not span)
    assert named["name"] == "GET /v1/models?access_token=****"
    assert named["status"]["message"] == "401 with **** and ****"
    assert "http.request.header.authorization" not in span["attrs"]
    assert "http.request.header.cookie" not in span["attrs"]
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"):
        assert key not in span["attrs"]
    assert span["attrs"]["exai.debug.note"] == "retrying with key ****"
    assert "****" in span["attrs"]["exai.debug.upstream_header"]
    assert span["attrs"]["exai.debug.jwt"] == "****"
    # Harmless attributes pass untouched.
    assert span["attrs"]["gen_ai.request.model"] == "kimi-k2-0905-preview"
    assert span["attrs"]["gen_ai.usage.input_tokens"] == 12
    event_attrs = {a["key"]: a["value"] for a in span["events"][0].get("attributes", [])}
    assert event_attrs["gen_ai.input.messages"] == {"stringValue": "****"}

    by_body = {json.dumps(r["body_value"], sort_keys=True): r for r in logs}
    plain = next(r for b, r in by_body.items() if "calling upstream" in b)
    assert "****" in plain["body_value"]
    assert "http.request.header.authorization" not in plain["attrs"]
    details = next(r for r in logs
                   if r.get("eventName") == "gen_ai.client.inference.operation.details")
    assert not {"gen_ai.input.messages", "gen_ai.output.messages",
                "gen_ai.system_instructions"} & set(details["attrs"])
    user_message = next(r for r in logs if r.get("eventName") == "gen_ai.user.message")
    assert user_message["body_value"]["content"] == "****"
    assert user_message["body_value"]["gen_ai.output.messages"] == "****"
    assert user_message["body_value"]["note"] == "key ****"


@pytest.fixture(scope="module")
def keep_content_pipeline(stack: Stack, tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[tuple[str, str, StandIn]]:
    """A second collector on the real config with EXAI_OTELCOL_GENAI_CONTENT=keep."""
    root: Path = tmp_path_factory.mktemp("keep-content")
    sink = standin(root / "sink")
    collector = main_collector(
        root / "otelcol", tempo_grpc=sink.grpc_endpoint, loki_http=sink.loki_endpoint,
        remote_write_url=stack.prometheus.remote_write_url,
        extra_env={"EXAI_OTELCOL_GENAI_CONTENT": "keep", "EXAI_TRACE_SAMPLE_PERCENT": "100"},
    )
    sink.proc.start()
    try:
        collector.proc.start()
        yield collector.otlp_grpc, collector.otlp_http, sink
    finally:
        collector.proc.stop(timeout=30)
        sink.proc.stop()


def test_keep_toggle_keeps_content_but_still_masks_secrets(
        keep_content_pipeline: tuple[str, str, StandIn]) -> None:
    grpc, http, sink = keep_content_pipeline
    service = unique_service("keep")
    _send_everything(grpc, http, service)
    spans, logs = _wait_delivered(sink, sink, service)
    delivered = json.dumps(spans) + json.dumps(logs)
    for secret in SECRETS:
        assert secret not in delivered
    span = next(s for s in spans if s["name"] == "chat kimi-k2-0905-preview")
    assert "http.request.header.authorization" not in span["attrs"]
    assert PROMPT in span["attrs"]["gen_ai.input.messages"]
    assert span["attrs"]["gen_ai.system_instructions"] == SYSTEM
    details = next(r for r in logs
                   if r.get("eventName") == "gen_ai.client.inference.operation.details")
    assert details["attrs"]["gen_ai.output.messages"] == ANSWER
