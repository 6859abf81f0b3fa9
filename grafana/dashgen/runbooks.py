"""Runbooks: one markdown panel per alert, holding docs/runbooks/<alertname>.md.

Every alert's ``runbook_url`` (``slo.SloConfig.runbook_url``) opens its panel alone, so the
panel ids are pinned to ``slo.runbook_panel_id(alertname)`` and stay put when alerts come and go.
The alerts are read from the rule files Prometheus loads (backends/prometheus/rules/*.yml), in
their order; tests/pipeline/test_runbooks.py fails when an alert has no page or a page no alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

import slo

from .core import Json, Panel, dashboard, dashboard_links, row, text

UID = slo.RUNBOOKS_DASHBOARD_UID
REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "backends" / "prometheus" / "rules"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
# Grid rows a runbook panel gets: enough to read its first sections; the panel scrolls, and the
# alert's link shows it alone, full screen.
RUNBOOK_HEIGHT = 24


@dataclass(frozen=True)
class Alert:
    """One alerting rule, as far as its runbook needs it."""

    name: str
    severity: str
    group: str
    rule_file: str
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def runbook(self) -> Path:
        return RUNBOOKS_DIR / f"{self.name}.md"


def alerts(rules_dir: Path = RULES_DIR) -> list[Alert]:
    """Every alerting rule of the rule files, in file and rule order."""
    found = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [Alert(rule["alert"], rule.get("labels", {}).get("severity", ""),
                            group["name"], path.name, rule.get("annotations", {}))
                      for rule in group["rules"] if "alert" in rule]
    return found


def _index(config: slo.SloConfig, listed: list[Alert]) -> str:
    lines = ["Each alert's `runbook_url` opens its runbook below on its own. The pages are "
             "`docs/runbooks/<alert>.md` in the repository; edit them there and run "
             "`python -m grafana.dashgen`.", "",
             "| alert | severity | rule group |", "|---|---|---|"]
    lines += [f"| [{a.name}]({config.runbook_url(a.name)}) | {a.severity} | "
              f"{a.group} ({a.rule_file}) |" for a in listed]
    return "\n".join(lines)


def build() -> Json:
    config = slo.load()
    listed = [alert for alert in alerts() if alert.runbook.exists()]
    panels: list[Panel] = [text("Alerts and their runbooks", _index(config, listed),
                                height=4 + len(listed))]
    group = None
    for alert in listed:
        if alert.group != group:
            group = alert.group
            panels.append(row(f"{group} ({alert.rule_file})"))
        panels.append(text(alert.name, alert.runbook.read_text(), height=RUNBOOK_HEIGHT,
                           panel_id=slo.runbook_panel_id(alert.name)))
    return dashboard(UID, "exai: Runbooks",
                     "What each alert means, who it affects, what to open, likely causes, how "
                     "to fix it and how to verify the fix.",
                     panels, links=dashboard_links(), time_from="now-6h")
