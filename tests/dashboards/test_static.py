"""Checks that need no running backend: the dashboards are current, well formed, name only
provisioned datasources, and every query parses with a real parser of its language
(PromQL: promtool's; LogQL and TraceQL: Grafana's lezer grammars)."""

from __future__ import annotations

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
            "find-request.json", "slos.json", "runbooks.json"}


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
    assert {"provider", "model", "tool", "trace_id", "correlation_id"} <= variables


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
