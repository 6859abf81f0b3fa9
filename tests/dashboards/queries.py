"""Every query the dashboards and datasource links run, with Grafana's variables substituted.

Grafana interpolates variables before a query reaches Prometheus, Loki or Tempo; the tests do the
same with the values a user gets by default ("All" = ``.*``) or would paste (a trace id), so what
is parsed and executed here is what the backends would receive.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
HERE = Path(__file__).resolve().parent
ZERO_FALLBACK = " or vector(0)"
SAMPLE_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

# Grafana's built-in variables, as a 1-hour dashboard would expand them.
BUILTINS = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$__auto": "1m",
    "${__range}": "1h", "$__range_s": "3600",
}
# Dashboard variables: label variables are "All" (regex .*); text boxes get realistic values.
VARIABLES = {
    "tool": ".*", "provider": ".*", "model": ".*", "instance": ".*", "role": ".*",
    "collector": ".*",
    "trace_id": SAMPLE_TRACE_ID, "correlation_id": "legacy-corr-0001", "request_id": "req-0001",
}
# Datasource link templates (grafana/provisioning), as Grafana fills them for one span.
LINK_VARIABLES = {
    "$__tags": 'service_name="exai-daemon"', "${__span.name}": "tools/call chat",
    "${__trace.traceId}": SAMPLE_TRACE_ID, "${__value.raw}": SAMPLE_TRACE_ID,
}


@dataclass(frozen=True)
class Query:
    """One query: where it lives, its language, and its text after substitution."""

    where: str
    datasource_uid: str
    language: str  # promql | logql | traceql | trace_id
    text: str

    @property
    def zero_fallback(self) -> bool:
        return self.language == "promql" and self.text.endswith(ZERO_FALLBACK)

    @property
    def primary(self) -> str:
        """The expression without its ``or vector(0)`` fallback."""
        return self.text[: -len(ZERO_FALLBACK)] if self.zero_fallback else self.text


def substitute(text: str, extra: dict[str, str] | None = None) -> str:
    for key, value in sorted({**BUILTINS, **(extra or {})}.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(key, value)

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise KeyError(f"unknown dashboard variable ${name} in {text!r}")
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, text)


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def load_datasources() -> list[dict[str, Any]]:
    return yaml.safe_load(DATASOURCES.read_text())["datasources"]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row (rows are layout, not data)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _language(datasource_type: str, text: str) -> str:
    if datasource_type == "prometheus":
        return "promql"
    if datasource_type == "loki":
        return "logql"
    if re.fullmatch(r"\$\{?trace_id\}?", text.strip()):
        return "trace_id"
    return "traceql"


def dashboard_queries() -> list[Query]:
    found = []
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                source = target["datasource"]
                raw = target.get("expr") or target.get("query") or ""
                found.append(Query(f"{name} / {panel['title']} / {target['refId']}",
                                   source["uid"], _language(source["type"], raw),
                                   substitute(raw)))
    return found


def variable_queries() -> list[Query]:
    """The label_values() queries behind the dashboard variables, as their PromQL selector."""
    found = []
    for name, dashboard in load_dashboards().items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["definition"])
            assert match, variable["definition"]
            found.append(Query(f"{name} / ${variable['name']}", variable["datasource"]["uid"],
                               "promql", substitute(match.group(1))))
    return found


def datasource_link_queries() -> list[Query]:
    """Queries inside the datasource cross-links (traces to logs, traces to metrics)."""
    by_uid = {d["uid"]: d for d in load_datasources()}
    tempo = by_uid["exai-tempo"]["jsonData"]
    # Provisioning turns "$$" into "$" before Grafana sees the text.
    logs_query = tempo["tracesToLogsV2"]["query"].replace("$$", "$")
    found = [Query("datasources / Tempo traces-to-logs", "exai-loki", "logql",
                   substitute(logs_query, LINK_VARIABLES))]
    for item in tempo["tracesToMetrics"]["queries"]:
        found.append(Query(f"datasources / Tempo traces-to-metrics / {item['name']}",
                           "exai-prometheus", "promql",
                           substitute(item["query"].replace("$$", "$"), LINK_VARIABLES)))
    return found


def ensure_node_modules() -> None:
    """Install the pinned grammars (package-lock.json) if scripts/install-test-deps.sh has not."""
    if (HERE / "node_modules" / "@grafana" / "lezer-traceql").is_dir():
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {HERE} failed:\n{done.stderr[-2000:]}")


def parse_with_lezer(queries: list[Query]) -> dict[str, str | None]:
    """LogQL/TraceQL syntax errors by ``where`` (None = parsed), via Grafana's lezer grammars."""
    ensure_node_modules()
    payload = [{"id": q.where, "language": q.language, "query": q.text} for q in queries]
    done = subprocess.run(["node", str(HERE / "parse_queries.mjs")], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60, check=False, cwd=HERE)
    if done.returncode != 0:
        raise RuntimeError(f"parse_queries.mjs failed (run `npm ci` in {HERE}):\n{done.stderr}")
    return {item["id"]: item["error"] for item in json.loads(done.stdout)}
