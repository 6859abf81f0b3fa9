"""Every daemon series a rule or a dashboard queries is one the telemetry catalogue produces.

A name typed by hand (or left behind by a rename) fails here, instead of an alert that can never
fire or a panel that stays empty. The catalogue's Prometheus names are checked against the real
collector in test_daemon_metric_names.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from otel import names
from tests.dashboards.queries import dashboard_queries, variable_queries

RULES = Path(__file__).resolve().parents[2] / "backends" / "prometheus" / "rules"
CATALOGUED = re.compile(r"^(exai|mcp|gen_ai|db|process)_")
# Outside the catalogue: the spanmetrics connector's series and the collector's self-metrics.
NOT_CATALOGUED = ("traces_span_metrics_", "otelcol_")
_NAME_REGEX = re.compile(r'__name__=~?"([^"]*)"')
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers: their label names are not series
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_STRINGS = re.compile(r'"[^"]*"')
_IDENTIFIER = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b")


def series_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects (``__name__`` regexes taken as literals)."""
    found = {alternative for regex in _NAME_REGEX.findall(promql)
             for alternative in regex.split("|")}
    text = _STRINGS.sub(" ", _GROUPING.sub(" ", _MATCHERS.sub(" ", promql)))
    return found | set(_IDENTIFIER.findall(text))


def rule_expressions() -> list[tuple[str, str]]:
    return [(f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
            for path in sorted(RULES.glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def promql() -> list[tuple[str, str]]:
    return rule_expressions() + [(q.where, q.text) for q in dashboard_queries() + variable_queries()
                                 if q.language == "promql"]


@pytest.mark.parametrize(("where", "expr"), promql())
def test_every_queried_series_is_in_the_catalogue(where: str, expr: str) -> None:
    unknown = {name for name in series_names(expr) if CATALOGUED.match(name)
               and not name.startswith(NOT_CATALOGUED)} - names.prometheus_series()
    assert not unknown, f"{where} queries series the catalogue cannot produce: {unknown}"


def test_the_parser_sees_series_not_labels() -> None:
    expr = ('sum by (gen_ai_provider_name) (rate(exai_gen_ai_cost_USD_total{db_system_name="x",'
            ' mcp_method_name=~"a|b"}[5m])) / max({__name__=~"exai_a|exai_b", job="j"})')
    assert series_names(expr) >= {"exai_gen_ai_cost_USD_total", "exai_a", "exai_b"}
    assert not {"gen_ai_provider_name", "db_system_name", "mcp_method_name"} & series_names(expr)


def test_a_misspelt_series_is_caught() -> None:
    assert "exai_gen_ai_client_cached_input_tokens_total" not in names.prometheus_series()
    assert "exai_gen_ai_cached_input_tokens_total" in names.prometheus_series()


def test_every_instrument_has_a_unit_rule_and_a_description() -> None:
    for metric in names.METRICS.values():
        assert metric.description, metric.name
        assert (metric.buckets is not None) == (metric.kind == "histogram"), metric.name
        assert metric.unit != "1", f"{metric.name}: unit 1 would add _ratio; state gauges use ''"
