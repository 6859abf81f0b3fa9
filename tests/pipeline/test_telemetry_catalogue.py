"""Every daemon series a rule, a dashboard or a runbook queries is one the telemetry catalogue
produces.

A name typed by hand (or left behind by a rename) fails here, instead of an alert that can never
fire, a panel that stays empty or a runbook query that finds nothing. The catalogue's Prometheus
names are checked against the real collector in test_daemon_metric_names.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from grafana.dashgen import names as dashboard_names
from otel import names
from tests.dashboards.queries import dashboard_queries, variable_queries

from .test_runbooks import pages as runbook_pages
from .test_runbooks import runbook_queries

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
                                 if q.language == "promql"] + runbook_queries("promql")


@pytest.mark.parametrize(("where", "expr"), promql())
def test_every_queried_series_is_in_the_catalogue(where: str, expr: str) -> None:
    unknown = {name for name in series_names(expr) if CATALOGUED.match(name)
               and not name.startswith(NOT_CATALOGUED)} - names.prometheus_series()
    assert not unknown, f"{where} queries series the catalogue cannot produce: {unknown}"


# --- runbooks: every series and label they name, in queries or in the text -----------------------
_PREFIXED = re.compile(r"\b(?:exai|mcp|gen_ai|db|process|otelcol|traces_span_metrics)_\w*")


def collector_series() -> set[str]:
    """What the collector produces, as the dashboards query it (proven live by tests/dashboards):
    its self-metrics per signal, with or without the _total suffix, and the span metrics."""
    d = dashboard_names
    per_signal = {template.format(signal=signal) for signal in d.SIGNALS
                  for template in (d.RECEIVER_ACCEPTED, d.RECEIVER_REFUSED, d.EXPORTER_SENT,
                                   d.EXPORTER_SEND_FAILED, d.EXPORTER_ENQUEUE_FAILED,
                                   d.MEMORY_LIMITER_REFUSED)}
    duration = d.SPAN_DURATION_BUCKET.removesuffix("_bucket")
    # An agent's loadbalancing exporter and a gateway's tail sampling (tests/fleet runs them).
    latency = d.LB_BACKEND_LATENCY_BUCKET.removesuffix("_bucket")
    fleet = {d.LB_BACKENDS, d.LB_BACKEND_OUTCOME, d.TAIL_SAMPLING_DROPPED_TOO_EARLY} | {
        f"{latency}_{part}" for part in ("bucket", "sum", "count")}
    return (per_signal | {f"{name}_total" for name in per_signal}
            | {d.QUEUE_SIZE, d.QUEUE_CAPACITY, d.TAIL_SAMPLING, d.COLLECTOR_CPU, d.COLLECTOR_RSS,
               d.SPAN_CALLS} | {f"{duration}_{part}" for part in ("bucket", "sum", "count")}
            | fleet)


def catalogue_labels() -> set[str]:
    """The labels (Prometheus) and structured metadata (Loki) the catalogue's attributes become."""
    attributes = {value for value in vars(names).values()
                  if isinstance(value, str) and "." in value and value not in names.METRICS}
    attributes |= {a for metric in names.METRICS.values() for a in metric.attributes}
    return {names.label_name(attribute) for attribute in attributes}


def test_every_series_and_label_a_runbook_names_exists() -> None:
    # A histogram may be named by its base name too, as otel/names.py derives it.
    known = (names.prometheus_series() | {names.prometheus_name(m) for m in names.METRICS}
             | collector_series() | catalogue_labels())
    named = {(page, name) for page, text in runbook_pages().items()
             for name in _PREFIXED.findall(text)}
    # A regex alternative such as otelcol_receiver_refused_(spans|...) names a prefix.
    unknown = {(page, name) for page, name in named if name not in known
               and not (name.endswith("_") and any(k.startswith(name) for k in known))}
    assert len(named) > 50
    assert not unknown, f"runbooks name series or labels nothing produces: {unknown}"


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
