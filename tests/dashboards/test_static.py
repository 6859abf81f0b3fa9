"""Checks that need no running backend: the dashboards are current, well formed, name only
provisioned datasources, and every query parses with a real parser of its language
(PromQL: promtool's; LogQL and TraceQL: Grafana's lezer grammars)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from grafana.dashgen.__main__ import main as generate

from .queries import (
    SAMPLE_TRACE_ID,
    Query,
    dashboard_queries,
    datasource_link_queries,
    load_dashboards,
    load_datasources,
    panels,
    parse_with_lezer,
    variable_queries,
)

EXPECTED = {"overview.json", "llm-providers.json", "storage.json", "pipeline-health.json",
            "collector-tier.json", "find-request.json", "slos.json", "runbooks.json"}
# Dashboards whose daemon queries follow the instance variable (service.instance.id).
BY_INSTANCE = {"overview.json", "llm-providers.json", "storage.json", "pipeline-health.json"}
SPAN_METRIC = re.compile(r"\btraces_span_metrics_\w+")
_AGGREGATION = re.compile(r"\b(sum|count|max|min|avg)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(")


def test_committed_json_matches_the_generator():
    assert generate(["--check"]) == 0, "run: python -m grafana.dashgen"


def test_every_dashboard_is_there_with_unique_uids_and_panel_ids():
    dashboards = load_dashboards()
    assert set(dashboards) == EXPECTED
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            assert panel["title"], name


def test_variables_for_provider_model_and_tool():
    variables = {v["name"] for d in load_dashboards().values() for v in d["templating"]["list"]}
    assert {"provider", "model", "tool", "trace_id", "correlation_id", "instance", "role",
            "collector"} <= variables


def test_every_variable_a_dashboard_uses_it_defines():
    """Grafana leaves an undefined $name as it is: a regex matching nothing, an empty panel."""
    for name, dashboard in load_dashboards().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        text = json.dumps([dashboard["panels"], dashboard["templating"]["list"]])
        used = set(re.findall(r"\$\{?([a-z]\w*)", text))
        assert used <= defined, (name, used - defined)


def test_the_fleet_dashboards_filter_every_daemon_query_by_instance():
    dashboards = load_dashboards()
    for name in BY_INSTANCE:
        variables = {v["name"]: v for v in dashboards[name]["templating"]["list"]}
        instance = variables["instance"]
        assert instance["multi"] and instance["includeAll"], name
        assert instance["definition"] == 'label_values(target_info{job="exai-daemon"}, instance)'
    daemon = re.compile(r"\b(?:exai|mcp|gen_ai|db|process|target)_\w+|\btraces_span_metrics_\w+")
    unfiltered = [q.where for q in dashboard_queries() if q.language == "promql"
                  and q.where.split(" / ")[0] in BY_INSTANCE and daemon.search(q.text)
                  and 'instance=~".*"' not in q.text]
    assert not unfiltered, unfiltered


def _enclosing_aggregation(expr: str, at: int) -> re.Match[str] | None:
    """The innermost aggregation whose parentheses hold position ``at`` of ``expr``."""
    found = None
    for match in _AGGREGATION.finditer(expr, 0, at):
        depth, end = 1, match.end()
        while end < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        if end > at:
            found = match
    return found


def test_every_span_metric_query_sums_the_gateways_away():
    """Two gateways compute span metrics apart (collector_instance_id): a query that keeps the
    label shows each call twice, or half of it on each line."""
    per_gateway = {"collector-tier.json / Tool calls counted per gateway / A"}
    wrong = []
    for query in dashboard_queries():
        if query.language != "promql" or query.where in per_gateway:
            continue
        for metric in SPAN_METRIC.finditer(query.text):
            agg = _enclosing_aggregation(query.text, metric.start())
            keeps = agg is not None and (
                agg.group(1) != "sum"
                or (agg.group(2) == "by" and "collector_instance_id" in agg.group(3))
                or (agg.group(2) == "without" and "collector_instance_id" not in agg.group(3)))
            if agg is None or keeps:
                wrong.append(query.where)
    assert not wrong, f"span-metric queries that do not sum collector_instance_id away: {wrong}"


def test_the_gateway_check_catches_a_query_that_keeps_the_gateway():
    kept = "sum by (collector_instance_id) (rate(traces_span_metrics_calls_total[1m]))"
    bare = "rate(traces_span_metrics_calls_total[1m])"
    summed = ("histogram_quantile(0.9, sum by (le) "
              "(rate(traces_span_metrics_duration_seconds_bucket[1m])))")
    for expr, ok in ((kept, False), (bare, False), (summed, True)):
        agg = _enclosing_aggregation(expr, expr.index("traces_span_metrics"))
        assert (agg is not None and agg.group(1) == "sum"
                and "collector_instance_id" not in (agg.group(3) or "")) is ok, expr


def test_every_datasource_a_panel_uses_is_provisioned():
    provisioned = {d["uid"]: d["type"] for d in load_datasources()}
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            sources = [t["datasource"] for t in panel.get("targets", [])]
            if panel.get("datasource", {}).get("uid") != "-- Mixed --" and "datasource" in panel:
                sources.append(panel["datasource"])
            if panel["type"] == "alertlist":
                sources.append({"uid": panel["options"]["datasource"], "type": "prometheus"})
            for source in sources:
                assert provisioned.get(source["uid"]) == source["type"], (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in provisioned, (name, variable["name"])


def test_datasource_cross_links_name_provisioned_uids():
    sources = {d["uid"]: d for d in load_datasources()}
    assert set(sources) == {"exai-prometheus", "exai-tempo", "exai-loki", "exai-alertmanager"}
    prom = sources["exai-prometheus"]["jsonData"]
    tempo = sources["exai-tempo"]["jsonData"]
    loki = sources["exai-loki"]["jsonData"]
    links = [
        prom["alertmanagerUid"],
        *[d["datasourceUid"] for d in prom["exemplarTraceIdDestinations"]],
        tempo["tracesToLogsV2"]["datasourceUid"], tempo["tracesToMetrics"]["datasourceUid"],
        tempo["serviceMap"]["datasourceUid"], tempo["lokiSearch"]["datasourceUid"],
        *[d["datasourceUid"] for d in loki["derivedFields"]],
    ]
    assert all(uid in sources for uid in links), links
    assert prom["exemplarTraceIdDestinations"][0]["name"] == "trace_id"
    assert loki["derivedFields"][0] == {**loki["derivedFields"][0], "matcherType": "label",
                                        "matcherRegex": "trace_id", "datasourceUid": "exai-tempo"}


def test_provisioning_escapes_grafana_variables():
    """Grafana expands ${X} in provisioning files as environment variables: link templates must
    be written $${...} or they arrive empty."""
    text = (Path(__file__).resolve().parents[2] / "grafana" / "provisioning" / "datasources"
            / "datasources.yaml").read_text()
    unescaped = re.findall(r"(?<!\$)\$\{__\w+", text) + re.findall(r"(?<!\$)\$__tags", text)
    assert not unescaped, unescaped


def test_no_admin_password_in_provisioning():
    for path in (Path(__file__).resolve().parents[2] / "grafana").rglob("*.y*ml"):
        data = yaml.safe_load(path.read_text())
        assert "password" not in str(data).lower(), path


# --- parsing ------------------------------------------------------------------------------------

def _promql() -> list[Query]:
    return [q for q in dashboard_queries() + variable_queries() + datasource_link_queries()
            if q.language == "promql"]


def _promtool_check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no query-parse command, but ``check rules`` parses every rule's expression."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: scripts/install-test-deps.sh installs Debian's prometheus")
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_every_promql_query_parses(tmp_path):
    queries = _promql()
    assert len(queries) > 50
    done = _promtool_check([q.text for q in queries], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_query(tmp_path):
    done = _promtool_check(["sum(rate(x[1m])"], tmp_path)
    assert done.returncode != 0


def test_every_logql_and_traceql_query_parses():
    queries = [q for q in dashboard_queries() + datasource_link_queries()
               if q.language in ("logql", "traceql")]
    assert {q.language for q in queries} == {"logql", "traceql"}
    errors = parse_with_lezer(queries)
    assert all(error is None for error in errors.values()), \
        {where: error for where, error in errors.items() if error}


def test_the_lezer_check_rejects_broken_queries():
    broken = [Query("bad logql", "exai-loki", "logql", '{service_name="x" | '),
              Query("bad traceql", "exai-tempo", "traceql", "{ span.x = }")]
    assert all(parse_with_lezer(broken).values())


def test_trace_id_lookups_become_a_trace_id():
    lookups = [q for q in dashboard_queries() if q.language == "trace_id"]
    assert lookups and all(q.text == SAMPLE_TRACE_ID for q in lookups)
    assert re.fullmatch(r"[0-9a-f]{32}", SAMPLE_TRACE_ID)
