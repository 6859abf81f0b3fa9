"""Small builders for Grafana dashboard JSON: datasources, targets, panels, variables, layout.

Why our own and not a dashboard SDK: the dashboards need a dozen panel shapes, and a hundred lines
we can read keep the generated JSON predictable and reviewable, with no extra dependency for the
project. Every query goes through ``prom``/``loki``/``tempo`` so tests can find and prove them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

# Fixed datasource uids: grafana/provisioning/datasources/datasources.yaml defines exactly these.
PROMETHEUS = {"type": "prometheus", "uid": "exai-prometheus"}
TEMPO = {"type": "tempo", "uid": "exai-tempo"}
LOKI = {"type": "loki", "uid": "exai-loki"}
ALERTMANAGER = {"type": "alertmanager", "uid": "exai-alertmanager"}

RATE = "$__rate_interval"
ZERO_FALLBACK = " or vector(0)"
GRID_WIDTH = 24
SCHEMA_VERSION = 41


def or_zero(expr: str) -> str:
    """``expr``, or 0 when it has no series: for counters that only exist once something failed.

    Tests strip the suffix and still require data from ``expr`` itself, except for the few
    failure counters the live test cannot provoke (listed in tests/dashboards).
    """
    return f"({expr}){ZERO_FALLBACK}"


# --- targets ------------------------------------------------------------------------------------

def prom(expr: str, legend: str = "", *, instant: bool = False, exemplar: bool = False) -> Json:
    """A PromQL target; ``legend`` uses Grafana's ``{{label}}`` syntax."""
    target: Json = {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend or "__auto",
                    "range": not instant, "instant": instant, "editorMode": "code"}
    if exemplar:
        target["exemplar"] = True
    return target


def loki(expr: str, *, legend: str = "") -> Json:
    """A LogQL target (log stream or metric query)."""
    return {"datasource": LOKI, "expr": expr, "queryType": "range", "editorMode": "code",
            "legendFormat": legend}


def tempo(query: str, *, query_type: str = "traceql", table_type: str = "traces",
          limit: int = 20, step: str | None = None) -> Json:
    """A Tempo target: TraceQL search, a trace id (``query_type='traceql'`` with an id), or
    TraceQL metrics (``query_type='traceql'`` plus ``step``; Grafana infers metrics mode)."""
    target: Json = {"datasource": TEMPO, "queryType": query_type, "query": query,
                    "tableType": table_type, "limit": limit}
    if step:
        target["step"] = step
        target["metricsQueryType"] = "range"
    return target


# --- panels -------------------------------------------------------------------------------------

@dataclass
class Panel:
    """A panel before layout: its JSON minus id/gridPos, and the size it wants.

    ``panel_id`` pins the panel's id, for panels that links open by id (``viewPanel``); the
    others are numbered in order from 1, so keep pinned ids clear of that range.
    """

    body: Json
    width: int = 8
    height: int = 8
    new_line: bool = False
    panel_id: int | None = None


def _with_refs(targets: list[Json]) -> list[Json]:
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def _datasource_of(targets: list[Json]) -> Json:
    sources = {t["datasource"]["uid"] for t in targets}
    return targets[0]["datasource"] if len(sources) == 1 else {"type": "datasource",
                                                                "uid": "-- Mixed --"}


def _thresholds(steps: list[tuple[float | None, str]]) -> Json:
    return {"mode": "absolute",
            "steps": [{"value": value, "color": color} for value, color in steps]}


def timeseries(title: str, targets: list[Json], *, unit: str = "short", description: str = "",
               width: int = 8, height: int = 8, stack: bool = False,
               overrides: list[Json] | None = None) -> Panel:
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                    "showPoints": "never", "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return Panel({
        "type": "timeseries", "title": title, "description": description,
        "datasource": _datasource_of(targets), "targets": _with_refs(targets),
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom},
                        "overrides": overrides or []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }, width, height)


def stat(title: str, targets: list[Json], *, unit: str = "short", description: str = "",
         width: int = 4, height: int = 4, decimals: int | None = None,
         thresholds: list[tuple[float | None, str]] | None = None,
         mappings: list[Json] | None = None, overrides: list[Json] | None = None,
         calc: str = "lastNotNull") -> Panel:
    defaults: Json = {"unit": unit,
                      "thresholds": _thresholds(thresholds or [(None, "green")]),
                      "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return Panel({
        "type": "stat", "title": title, "description": description,
        "datasource": _datasource_of(targets), "targets": _with_refs(targets),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                    "textMode": "value_and_name", "orientation": "auto"},
    }, width, height)


def unit_override(ref_id: str, unit: str, decimals: int | None = None) -> Json:
    """Field override giving the series of one query (by refId) its own unit."""
    props: list[Json] = [{"id": "unit", "value": unit}]
    if decimals is not None:
        props.append({"id": "decimals", "value": decimals})
    return {"matcher": {"id": "byFrameRefID", "options": ref_id}, "properties": props}


def logs(title: str, target: Json, *, description: str = "", width: int = 24,
         height: int = 10) -> Panel:
    return Panel({
        "type": "logs", "title": title, "description": description,
        "datasource": target["datasource"], "targets": _with_refs([target]),
        "options": {"showTime": True, "wrapLogMessage": True, "enableLogDetails": True,
                    "sortOrder": "Descending", "dedupStrategy": "none",
                    "prettifyLogMessage": False},
    }, width, height)


def traces(title: str, target: Json, *, description: str = "", width: int = 24,
           height: int = 14) -> Panel:
    """One trace shown in full (the ``traces`` panel), looked up by the target's query."""
    return Panel({"type": "traces", "title": title, "description": description,
                  "datasource": target["datasource"], "targets": _with_refs([target])},
                 width, height)


def table(title: str, targets: list[Json], *, description: str = "", width: int = 24,
          height: int = 8) -> Panel:
    return Panel({"type": "table", "title": title, "description": description,
                  "datasource": _datasource_of(targets), "targets": _with_refs(targets),
                  "options": {"showHeader": True}}, width, height)


def alert_list(title: str, *, description: str = "", width: int = 12, height: int = 8) -> Panel:
    """Firing and pending alerts of the Prometheus rules (data-source managed alerts)."""
    return Panel({
        "type": "alertlist", "title": title, "description": description,
        "options": {"viewMode": "list", "groupMode": "default", "maxItems": 20,
                    "sortOrder": 1, "dashboardAlerts": False, "alertName": "",
                    "alertInstanceLabelFilter": "", "datasource": PROMETHEUS["uid"],
                    "stateFilter": {"firing": True, "pending": True, "noData": False,
                                    "normal": False, "error": True}},
    }, width, height)


def text(title: str, markdown: str, *, width: int = 24, height: int = 6,
         panel_id: int | None = None) -> Panel:
    """A markdown panel; ``panel_id`` pins its id (see ``Panel``)."""
    return Panel({"type": "text", "title": title,
                  "options": {"mode": "markdown", "content": markdown.strip() + "\n"}},
                 width, height, panel_id=panel_id)


def row(title: str) -> Panel:
    return Panel({"type": "row", "title": title, "collapsed": False, "panels": []},
                 GRID_WIDTH, 1, new_line=True)


# --- variables ----------------------------------------------------------------------------------

def label_variable(name: str, label: str, metric_selector: str, label_name: str) -> Json:
    """A multi-value Prometheus label variable with "All" meaning the regex ``.*``."""
    query = f"label_values({metric_selector}, {label_name})"
    return {
        "type": "query", "name": name, "label": label, "datasource": PROMETHEUS,
        "definition": query, "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [],
    }


def text_variable(name: str, label: str, description: str) -> Json:
    return {"type": "textbox", "name": name, "label": label, "description": description,
            "query": "", "current": {"text": "", "value": ""}, "options": []}


# --- dashboard ----------------------------------------------------------------------------------

@dataclass
class _Cursor:
    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1
    placed: list[Json] = field(default_factory=list)

    def place(self, panel: Panel) -> None:
        if panel.new_line or self.x + panel.width > GRID_WIDTH:
            self.y += self.row_height
            self.x, self.row_height = 0, 0
        panel_id = self.next_id if panel.panel_id is None else panel.panel_id
        if any(placed["id"] == panel_id for placed in self.placed):
            raise ValueError(f"panel id {panel_id} ({panel.body['title']!r}) is taken")
        body = {"id": panel_id,
                "gridPos": {"x": self.x, "y": self.y, "w": panel.width, "h": panel.height},
                **panel.body}
        self.placed.append(body)
        if panel.panel_id is None:
            self.next_id += 1
        self.x += panel.width
        self.row_height = max(self.row_height, panel.height)
        if panel.body["type"] == "row":
            self.y += panel.height
            self.x, self.row_height = 0, 0


def dashboard(uid: str, title: str, description: str, panels: list[Panel], *,
              variables: list[Json] | None = None, links: list[Json] | None = None,
              time_from: str = "now-1h") -> Json:
    """A complete dashboard; panels flow left to right, rows start a new line."""
    cursor = _Cursor()
    for panel in panels:
        cursor.place(panel)
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["exai"], "editable": True, "graphTooltip": 1,
        # The contract: people read Australia/Melbourne time.
        "timezone": "Australia/Melbourne",
        "time": {"from": time_from, "to": "now"}, "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION, "version": 1,
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": links or [],
        "panels": cursor.placed,
    }


def dashboard_links() -> list[Json]:
    """Links to every exai dashboard (by tag), shown at the top of each."""
    return [{"type": "dashboards", "tags": ["exai"], "asDropdown": True, "title": "exai dashboards",
             "includeVars": False, "keepTime": True}]
