"""promtool unit tests for the generated SLO rules: hand-made traffic for every burn-rate and
budget alert, firing when it should and quiet when the budget holds.

``python -m slo`` writes them to backends/prometheus/tests/exai-slo.test.yml next to the other
rule tests (promtool runs them all). Each scenario is a stream of the daemon's own series as the
collector's remote write names them; an expected alert carries the generated rule's own labels
and annotations, so a scenario proves the PromQL, not the wording.
"""

from __future__ import annotations

import re
from typing import Any

from otel import names
from otel.names import prometheus_name

from . import SloConfig
from .rules import rule_groups

TESTS_FILE = "backends/prometheus/tests/exai-slo.test.yml"
MCP = prometheus_name(names.MCP_SERVER_OPERATION_DURATION)
GENAI = prometheus_name(names.GEN_AI_CLIENT_OPERATION_DURATION)
COST = prometheus_name(names.EXAI_GEN_AI_COST)
UNPRICED = prometheus_name(names.EXAI_GEN_AI_UNPRICED_CALLS)
TOOL = 'mcp_method_name="tools/call", gen_ai_tool_name="chat", job="exai-daemon"'
THREE_DAYS = 3 * 24 * 60 + 60  # minutes of input for the three-day windows
Case = dict[str, Any]


def _calls(per_minute: int, minutes: int, **labels: str) -> dict[str, str]:
    extra = "".join(f', {key}="{value}"' for key, value in labels.items())
    return {"series": f"{MCP}_count{{{TOOL}{extra}}}", "values": f"0+{per_minute}x{minutes}"}


def _provider(name: str, per_minute: int, **labels: str) -> dict[str, str]:
    extra = "".join(f', {key}="{value}"' for key, value in labels.items())
    return {"series": f'{GENAI}_count{{gen_ai_provider_name="{name}"{extra}}}',
            "values": f"0+{per_minute}x120"}


def _failing(per_minute: int, minutes: int, error_type: str, code: str) -> dict[str, str]:
    return _calls(per_minute, minutes, error_type=error_type, rpc_response_status_code=code)


class _Expect:
    """The alerts a scenario expects, built from the generated rules."""

    def __init__(self, config: SloConfig) -> None:
        self.rules = {rule["alert"]: rule for group in rule_groups(config)["groups"]
                      for rule in group["rules"] if "alert" in rule}

    def __call__(self, alertname: str, **labels: str) -> dict[str, Any]:
        rule = self.rules[alertname]
        annotations = {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)],
                                   value)
                       for key, value in rule["annotations"].items()}
        return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


def _case(name: str, series: list[dict[str, str]],
          checks: list[tuple[str, str, list[dict[str, Any]]]]) -> Case:
    """One promtool test: ``checks`` are (eval_time, alertname, expected alerts)."""
    return {"name": name, "interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": at, "alertname": alert, "exp_alerts": expected}
        for at, alert, expected in checks]}


def _availability(expect: _Expect) -> list[Case]:
    page, ticket = "ExaiToolAvailabilityBurnRatePage", "ExaiToolAvailabilityBurnRateTicket"
    return [
        _case("fast burn: 10 % of calls fail through a provider (20x the 0.5 % budget)",
              [_calls(90, 120), _failing(10, 120, "500", "PROVIDER_ERROR")],
              [("1m", page, []), ("10m", page, [expect(page)])]),
        _case("caller errors spend no budget: unknown tools, bad arguments, rate limits",
              [_calls(70, 120), _failing(10, 120, "-32602", "TOOL_NOT_FOUND"),
               _failing(10, 120, "INVALID_ARGUMENTS", "INVALID_ARGUMENTS"),
               _failing(10, 120, "rate_limited", "OVER_CAPACITY")],
              [("30m", page, []), ("90m", ticket, [])]),
        _case("slow burn: 4 % failing, under the 1h threshold (7.2 %), over the 6h one (3 %)",
              [_calls(96, 400), _failing(4, 400, "timeout", "TIMEOUT")],
              [("40m", page, [expect(page)])]),
        _case("under budget: 0.3 % failing for three days",
              [_calls(997, THREE_DAYS), _failing(3, THREE_DAYS, "500", "PROVIDER_ERROR")],
              [("73h", page, []), ("73h", ticket, [])]),
        _case("a steady leak: 0.8 % failing (1.6x) is too slow to page, but opens a ticket",
              [_calls(992, 600), _failing(8, 600, "500", "PROVIDER_ERROR")],
              [("9h", page, []), ("9h", ticket, [expect(ticket)])]),
    ]


def _latency(expect: _Expect) -> list[Case]:
    page, ticket = "ExaiToolLatencyBurnRatePage", "ExaiToolLatencyBurnRateTicket"
    within = f'{MCP}_bucket{{{TOOL}, le="30"}}'
    return [
        _case("half the calls over 30 s: ten times the 5 % budget",
              [{"series": within, "values": "0+5x600"}, _calls(10, 600)],
              [("40m", page, [expect(page)]), ("9h", ticket, [expect(ticket)])]),
        _case("every call within 30 s",
              [{"series": within, "values": "0+10x400"}, _calls(10, 400)],
              [("40m", page, []), ("6h", ticket, [])]),
    ]


def _providers(expect: _Expect) -> list[Case]:
    page, ticket = "ExaiProviderAvailabilityBurnRatePage", "ExaiProviderAvailabilityBurnRateTicket"
    glm = {"gen_ai_provider_name": "z_ai"}
    return [_case(
        "GLM fails 20 % of its calls: pages for z_ai only; cancelled Kimi calls spend nothing",
        [_provider("z_ai", 8), _provider("z_ai", 2, error_type="500"),
         _provider("moonshot_ai", 8), _provider("moonshot_ai", 2, error_type="cancelled")],
        [("10m", page, [expect(page, **glm)]), ("100m", ticket, [expect(ticket, **glm)])]),
        _case("one GLM call in 400 fails: under its 1 % budget",
              [_provider("z_ai", 399), _provider("z_ai", 1, error_type="timeout")],
              [("30m", page, []), ("100m", ticket, [])])]


def _spend(expect: _Expect) -> list[Case]:
    projected, spent = "ExaiLlmSpendProjectedOverBudget", "ExaiLlmSpendOverBudget"

    def cost(usd_per_minute: float) -> dict[str, str]:
        return {"series": f'{COST}{{gen_ai_provider_name="z_ai", gen_ai_request_model="glm-4.6"}}',
                "values": f"0+{usd_per_minute}x300"}
    unpriced = {"series": f'{UNPRICED}{{gen_ai_provider_name="z_ai", '
                          f'gen_ai_request_model="_OTHER"}}', "values": "0 0 0 1 2 2 2"}
    return [
        _case("0.5 USD a minute: on course to pass the budget, then past it",
              [cost(0.5)], [("10m", projected, []), ("60m", projected, [expect(projected)]),
                            ("150m", spent, [expect(spent)])]),
        _case("0.0005 USD a minute: about 22 USD a month, under the budget",
              [cost(0.0005)], [("60m", projected, []), ("150m", spent, [])]),
        _case("calls to a model the price table lacks",
              [unpriced], [("2m", "ExaiLlmUnpricedCalls", []), ("5m", "ExaiLlmUnpricedCalls", [
                  expect("ExaiLlmUnpricedCalls", gen_ai_provider_name="z_ai",
                         gen_ai_request_model="_OTHER")])]),
    ]


def rule_tests(config: SloConfig, rules_path: str) -> dict[str, Any]:
    """The promtool test file for the rules at ``rules_path`` (relative to the test file)."""
    expect = _Expect(config)
    cases = [*_availability(expect), *_latency(expect), *_providers(expect), *_spend(expect)]
    return {"rule_files": [rules_path], "evaluation_interval": "1m", "tests": cases}
