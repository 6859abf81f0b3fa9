"""``exai chat``'s summary of an answer, from replies as the daemon sends them."""

from __future__ import annotations

from typing import Any

from app.cli import chat_summary
from app.protocol import call_ok, parse_call_reply

TRACE_ID = "ab" * 16


def _summary(**metadata: Any) -> list[str]:
    base = {"provider": "glm", "model": "glm-4.5-flash", "continuation_id": "c-1"}
    return chat_summary(parse_call_reply(call_ok("r-1", "answer", {**base, **metadata},
                                                 TRACE_ID)))


def test_usage_and_cost_are_shown():
    lines = _summary(usage={"input_tokens": 12, "output_tokens": 3, "cached_input_tokens": 4},
                     cost_usd=0.0000125)
    assert lines == ["model: glm/glm-4.5-flash  tokens in/out/cached: 12/3/4  cost: $0.000013",
                     "continuation_id: c-1", f"trace_id: {TRACE_ID}"]


def test_null_usage_is_unknown_not_a_crash():
    # The daemon sends "usage": null when the provider reported none (never invented zeros).
    lines = _summary(usage=None, cost_usd=None)
    assert lines[0] == ("model: glm/glm-4.5-flash  tokens in/out/cached: unknown (the provider "
                        "reported no usage)  cost: unpriced")


def test_absent_usage_is_unknown_too():
    assert "tokens in/out/cached: unknown" in _summary()[0]


def test_reasoning_tokens_are_shown_as_part_of_the_output():
    lines = _summary(usage={"input_tokens": 12, "output_tokens": 30, "cached_input_tokens": 0,
                            "reasoning_tokens": 18}, cost_usd=0.0001)
    assert "tokens in/out/cached: 12/30/0 (18 of the output reasoning)" in lines[0]
