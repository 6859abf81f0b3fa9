"""A runbook behind every alert: docs/runbooks/<alertname>.md for each alert of
backends/prometheus/rules/*.yml and an alert for each page, the rules' links to them, their panels
on the Runbooks dashboard, a firing promtool test per alert, and nothing named in a page that
does not exist (dashboards and panels, queries, settings, ``exai`` options, compose services,
Redis keys). The series the pages name are checked against the telemetry catalogue in
test_telemetry_catalogue.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import click
import pytest
import typer.main
import yaml

import slo
from app.cli import app as cli_app
from app.config import Settings
from app.persistence.outbox import DEFAULT_PREFIX as OUTBOX_KEY
from grafana.dashgen import runbooks
from tests.dashboards.queries import Query, load_dashboards, panels, parse_with_lezer
from tests.dashboards.test_static import _promtool_check

REPO = runbooks.REPO
UNIT_TESTS = REPO / "backends" / "prometheus" / "tests"
INDEX = runbooks.RUNBOOKS_DIR / "README.md"
SECTIONS = ("What it means", "Who is affected", "What to open", "Likely causes", "Steps to fix",
            "How to verify")
QUERY_LANGUAGES = ("promql", "logql", "traceql")
_FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)
_CODE_SPAN = re.compile(r"`([^`]+)`")
_BLOCK_START = re.compile(r"^\s*(?:[-*] |\d+\. |#|\|)")
_DASHBOARD = re.compile(r"\*\*(exai: [^*]+)\*\*")
_QUOTED = re.compile(r'"([^"]+)"')
_RECORDED = re.compile(r"\b(?:exai|slo):[a-z0-9_]+:[a-z0-9_]+\b")
_SETTING = re.compile(
    r"\b(?:EXAI|OTEL|KIMI|GLM|SUPABASE|REDIS|DEFAULT|HEALTH|CONVERSATION|MAX)_[A-Z0-9_]*[A-Z0-9]\b")
_REDIS_KEY = re.compile(rf"\b{re.escape(OUTBOX_KEY)}[:a-z]*")
_COMMAND = re.compile(r"^(?:time )?exai [a-z]|\bdocker compose ")
# docker compose options that take a value (the service names follow them)
_COMPOSE_VALUE_OPTIONS = {"--profile", "--tail", "-n", "-s", "--signal", "-f", "--file"}


# --- reading the pages --------------------------------------------------------------------------

def pages() -> dict[str, str]:
    """Every page of docs/runbooks, the index included, by file name."""
    return {path.name: path.read_text() for path in sorted(runbooks.RUNBOOKS_DIR.glob("*.md"))}


def runbook_queries(language: str) -> list[tuple[str, str]]:
    """(where, query) for each line of the pages' fenced ``language`` blocks."""
    return [(f"{name}: {line.strip()[:60]}", line.strip())
            for name, text in pages().items()
            for block_language, body in _FENCE.findall(text) if block_language == language
            for line in body.splitlines() if line.strip()]


def _prose_blocks(text: str) -> Iterator[str]:
    """Paragraphs, list items, headings and table rows outside code blocks, each joined into
    one line (so that inline code and quotes broken over lines are whole)."""
    block: list[str] = []
    for line in [*_FENCE.sub("", text).splitlines(), ""]:
        if not line.strip() or _BLOCK_START.match(line):
            if block:
                yield " ".join(block)
            block = [] if not line.strip() else [line.strip()]
        else:
            block.append(line.strip())


def _commands(text: str) -> Iterator[list[str]]:
    """Shell commands of the pages' ``sh`` blocks and inline code, as tokens, one list per
    command of a pipeline."""
    candidates = [line for language, body in _FENCE.findall(text) if language == "sh"
                  for line in body.splitlines()]
    candidates += [span for block in _prose_blocks(text) for span in _CODE_SPAN.findall(block)]
    for candidate in filter(_COMMAND.search, candidates):
        lexer = shlex.shlex(candidate, posix=True, punctuation_chars=True)
        command: list[str] = []
        for token in lexer:
            if token in {"|", "||", "&&", ";", "&"}:
                yield command
                command = []
            else:
                command.append(token)
        yield command


def _alerts() -> dict[str, runbooks.Alert]:
    return {alert.name: alert for alert in runbooks.alerts()}


# --- every alert, its page and its links ---------------------------------------------------------

def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    alerts = set(_alerts())
    written = {name.removesuffix(".md") for name in pages()} - {INDEX.stem}
    assert len(alerts) >= 19, alerts
    assert alerts - written == set(), "alerts without a runbook in docs/runbooks"
    assert written - alerts == set(), "runbooks of no alert in backends/prometheus/rules"


@pytest.mark.parametrize("name", sorted(set(pages()) - {INDEX.name}))
def test_a_runbook_has_every_section(name: str) -> None:
    text = pages()[name]
    assert text.startswith(f"# {name.removesuffix('.md')}\n"), "title: the alert's name"
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == list(SECTIONS), headings


def test_the_index_lists_every_alert_with_its_severity_and_dashboard() -> None:
    titles = {d["uid"]: d["title"] for d in load_dashboards().values()}
    config = slo.load()
    rows = re.findall(r"^\| \[(\w+)\]\((\w+)\.md\) \| (\w+) \| [^|]+ \| ([^|]+?) \|$",
                      INDEX.read_text(), re.M)
    listed = {name: (file, severity, dashboard) for name, file, severity, dashboard in rows}
    alerts = _alerts()
    assert set(listed) == set(alerts)
    for name, alert in alerts.items():
        uid = alert.annotations.get("dashboard_url", "").removeprefix(config.dashboard_url(""))
        assert listed[name] == (name, alert.severity, titles.get(uid)), name


def test_every_rule_links_its_runbook_and_a_generated_dashboard() -> None:
    config = slo.load()
    uids = {d["uid"] for d in load_dashboards().values()}
    wrong = {}
    for name, alert in _alerts().items():
        links = {key: alert.annotations.get(key) for key in ("runbook_url", "dashboard_url")}
        uid = (links["dashboard_url"] or "").removeprefix(config.dashboard_url(""))
        wanted = {"runbook_url": config.runbook_url(name),
                  "dashboard_url": config.dashboard_url(uid) if uid in uids else "a dashboard"}
        if links != wanted:
            wrong[name] = (links, wanted)
    assert not wrong, f"(found, wanted) links: {wrong}"


def test_the_runbooks_dashboard_shows_each_runbook_at_its_pinned_id() -> None:
    dashboard = load_dashboards()["runbooks.json"]
    assert dashboard["uid"] == slo.RUNBOOKS_DASHBOARD_UID
    by_id = {panel["id"]: panel for panel in dashboard["panels"]}
    alerts = _alerts()
    ids = {name: slo.runbook_panel_id(name) for name in alerts}
    assert len(set(ids.values())) == len(ids), "two alerts share a runbook panel id"
    for name, panel_id in ids.items():
        panel = by_id.get(panel_id, {})
        assert (panel.get("type"), panel.get("title")) == ("text", name), name
        assert panel["options"] == {"mode": "markdown",
                                    "content": alerts[name].runbook.read_text().strip() + "\n"}, \
            f"{name}: the panel is not the page; run python -m grafana.dashgen"
    runbook_panels = {p["title"] for p in panels(dashboard) if p["id"] in ids.values()}
    assert runbook_panels == set(alerts)


def test_every_alert_has_a_firing_unit_test_showing_its_runbook_url() -> None:
    config = slo.load()
    checks = [check for path in sorted(UNIT_TESTS.glob("*.test.yml"))
              for case in yaml.safe_load(path.read_text())["tests"]
              for check in case.get("alert_rule_test", [])]
    shown = {check["alertname"] for check in checks
             if any(alert.get("exp_annotations", {}).get("runbook_url")
                    == config.runbook_url(check["alertname"]) for alert in check["exp_alerts"])}
    missing = sorted(set(_alerts()) - shown)
    assert not missing, ("alerts with no promtool alert_rule_test expecting them to fire (with "
                         f"their runbook_url) in backends/prometheus/tests: {missing}")


# --- what the pages name exists -------------------------------------------------------------------

def test_every_dashboard_and_panel_a_page_cites_exists() -> None:
    titles = {d["title"]: {p["title"] for p in panels(d)} for d in load_dashboards().values()}
    unknown = []
    for name, text in pages().items():
        for block in _prose_blocks(text):
            parts = _DASHBOARD.split(_CODE_SPAN.sub("", block))
            for title, after in zip(parts[1::2], parts[2::2], strict=True):
                if title not in titles:
                    unknown.append((name, title))
                unknown += [(name, f"{title} / {panel}") for panel in _QUOTED.findall(after)
                            if panel not in titles.get(title, set())]
    assert not unknown, f"no such dashboard or panel: {unknown}"


def test_every_query_parses(tmp_path: Path) -> None:
    promql = [query for _, query in runbook_queries("promql")]
    assert len(promql) > 40
    done = _promtool_check(promql, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    others = [Query(where, "", language, query) for language in QUERY_LANGUAGES[1:]
              for where, query in runbook_queries(language)]
    assert {q.language for q in others} == {"logql", "traceql"}
    errors = {where: error for where, error in parse_with_lezer(others).items() if error}
    assert not errors, errors


def test_every_recorded_series_a_query_reads_is_recorded() -> None:
    recorded = {rule["record"] for path in runbooks.RULES_DIR.glob("*.yml")
                for group in yaml.safe_load(path.read_text())["groups"]
                for rule in group["rules"] if "record" in rule}
    read = {name for _, query in runbook_queries("promql") for name in _RECORDED.findall(query)}
    assert read, "the pages read no recording rule"
    assert read - recorded == set()


def test_every_setting_a_page_names_exists() -> None:
    known = {field.alias for field in Settings.model_fields.values() if field.alias}
    for config in (REPO / "collector-config").glob("*.yaml"):
        known |= set(re.findall(r"\$\{env:(\w+)", config.read_text()))
    # The OpenTelemetry SDK's own variables, as README.md and the compose file document them.
    documented = (REPO / "README.md").read_text() + (REPO / "docker-compose.yml").read_text()
    named = {(name, setting) for name, text in pages().items()
             for setting in _SETTING.findall(text)}
    unknown = {(name, s) for name, s in named if s not in known and s not in documented}
    assert not unknown, f"no such setting: {unknown}"


def test_every_exai_command_and_option_a_page_uses_exists() -> None:
    commands = cast(click.Group, typer.main.get_command(cli_app)).commands
    used, wrong = 0, []
    for name, text in pages().items():
        for tokens in _commands(text):
            if "exai" not in tokens[:2] or tokens[0] not in {"exai", "time"}:
                continue
            words = tokens[tokens.index("exai") + 1:]
            command = commands.get(words[0]) if words else None
            if command is None:
                wrong.append((name, " ".join(tokens)))
                continue
            used += 1
            options = {opt for param in command.params
                       for opt in (*param.opts, *param.secondary_opts)}
            wrong += [(name, f"exai {words[0]} {word}") for word in words[1:]
                      if word.startswith("-") and word.split("=")[0] not in options]
    assert used > 10
    assert not wrong, f"no such exai command or option: {wrong}"


def test_every_compose_service_a_page_names_exists() -> None:
    services = set(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])
    used, wrong = 0, []
    for name, text in pages().items():
        for tokens in _commands(text):
            if tokens[:2] != ["docker", "compose"]:
                continue
            words = [w for i, w in enumerate(tokens[2:], 2)
                     if not w.startswith("-") and tokens[i - 1] not in _COMPOSE_VALUE_OPTIONS]
            verb, named = words[0], words[1:]
            if verb in {"exec", "run"}:
                named = named[:1]
            used += 1
            wrong += [(name, verb, service) for service in named if service not in services]
    assert used > 10
    assert not wrong, f"no such compose service: {wrong}"


def test_every_outbox_key_a_page_names_is_the_outbox_s() -> None:
    keys = {key for text in pages().values() for key in _REDIS_KEY.findall(text)}
    assert keys, "the pages name no outbox key"
    assert keys <= {OUTBOX_KEY, f"{OUTBOX_KEY}:processing", f"{OUTBOX_KEY}:dead"}, keys


def test_the_slo_pages_state_the_objectives_of_slos_yaml() -> None:
    config = slo.load()
    stale = [(name, f"{objective.objective:g} %") for objective in config.slos
             for name in _alerts() if name.startswith(f"{objective.alert_prefix}BurnRate")
             and f"{objective.objective:g} %" not in pages()[f"{name}.md"]]
    stale += [(name, f"{config.spend.budget_usd:g} USD") for name in _alerts()
              if name.startswith("ExaiLlmSpend")
              and f"{config.spend.budget_usd:g} USD" not in pages()[f"{name}.md"]]
    assert not stale, f"runbooks out of step with slo/slos.yaml: {stale}"
