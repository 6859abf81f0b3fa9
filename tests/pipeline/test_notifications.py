"""Notifications people receive: the receivers backends/alertmanager/render.sh chooses from the
environment, the messages each one sends (templates rendered by amtool 0.25, Alertmanager's own
template engine), and a live Alertmanager delivering to a Slack-compatible incoming webhook and an
SMTP server on loopback sockets. `amtool check-config` of every choice of receivers is in
test_static_configs.py."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.harness.alertmanager import (
    AM_CONFIG,
    RENDER,
    REPO,
    TEMPLATES,
    SlackReceiver,
    SMTPReceiver,
    WebhookReceiver,
    alertmanager,
    render,
    render_template,
)
from tests.harness.procs import require_binary, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RUNBOOK = "http://localhost:3000/d/exai-runbooks?viewPanel=panel-99174"
DASHBOARD = "http://localhost:3000/d/exai-slos"
SUMMARY = "Circuit breaker for provider z_ai is open"


def _alert(status: str = "firing", **annotations: str) -> dict[str, Any]:
    labels = {"alertname": "ExaiProviderCircuitOpen", "severity": "critical",
              "gen_ai_provider_name": "z_ai"}
    return {"status": status, "labels": labels, "fingerprint": "1",
            "annotations": {"summary": SUMMARY, "description": "Calls routed to it fail fast.",
                            **annotations},
            "startsAt": "2025-06-01T10:00:00Z", "generatorURL": "http://prometheus:9090/graph",
            "endsAt": "2025-06-01T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"}


WITH_TRACE = _alert(runbook_url=RUNBOOK, dashboard_url=DASHBOARD, trace_id=TRACE_ID)
NO_TRACE = _alert(runbook_url=RUNBOOK, dashboard_url=DASHBOARD)


def _data(tmp_path: Path, *alerts: dict[str, Any]) -> Path:
    """A template.Data JSON file for amtool, as Alertmanager builds it for one alert group."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = {"alertname": "ExaiProviderCircuitOpen", "severity": "critical"}
    shared = {k: v for k, v in alerts[0]["annotations"].items()
              if all(a["annotations"].get(k) == v for a in alerts)}
    path = tmp_path / f"data-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps({
        "receiver": "critical", "status": "firing" if firing else "resolved", "alerts": alerts,
        "groupLabels": common, "commonLabels": common, "commonAnnotations": shared,
        "externalURL": "http://localhost:9093"}))
    return path


def _explore(url: str) -> dict[str, Any]:
    """The Explore pane a Grafana link opens."""
    parts = urlsplit(url)
    assert parts.netloc == "localhost:3000" and parts.path == "/explore", url
    (pane,) = json.loads(parse_qs(parts.query)["panes"][0]).values()
    return pane


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value or "" for name, value in attrs if tag == "a" and name == "href"]


def _hrefs(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


# --- the templates --------------------------------------------------------------------------

def test_every_template_the_config_names_is_defined() -> None:
    used = set(re.findall(r'\{\{ template "([\w.]+)" \. \}\}', AM_CONFIG.read_text()))
    defined = set(re.findall(r'\{\{-? define "([\w.]+)"', (TEMPLATES / "exai.tmpl").read_text()))
    assert used and used <= defined, used - defined


def test_slack_message_carries_summary_runbook_grafana_and_the_trace(tmp_path: Path) -> None:
    data = _data(tmp_path, WITH_TRACE)
    assert render_template("exai.title", data) == "[FIRING:1] ExaiProviderCircuitOpen (critical)"
    assert render_template("exai.slack.color", data) == "danger"
    assert render_template("exai.slack.title_link", data) == DASHBOARD
    assert render_template("exai.slack.fallback", data) == (
        f"[FIRING:1] ExaiProviderCircuitOpen (critical): {SUMMARY}")
    text = render_template("exai.slack.text", data)
    assert text.startswith("1 firing, 0 resolved\n")
    assert f"*Firing: {SUMMARY}*" in text
    assert f"<{RUNBOOK}|Runbook> | <{DASHBOARD}|Grafana dashboard>" in text
    (link,) = re.findall(r"Example trace: <([^|>]+)\|" + TRACE_ID + ">", text)
    pane = _explore(link)
    assert pane["datasource"] == "exai-tempo" and pane["queries"][0]["query"] == TRACE_ID
    assert pane["range"] == {"from": str(int(datetime(2025, 6, 1, 9, tzinfo=UTC).timestamp()
                                             * 1000)), "to": "now"}


def test_email_subject_text_and_html_carry_the_same(tmp_path: Path) -> None:
    data = _data(tmp_path, WITH_TRACE)
    subject = render_template("exai.email.subject", data)
    assert subject == f"[FIRING:1] ExaiProviderCircuitOpen (critical): {SUMMARY}"
    text = render_template("exai.email.text", data)
    for line in (f"[FIRING] ExaiProviderCircuitOpen (critical): {SUMMARY}",
                 f"  Runbook: {RUNBOOK}", f"  Grafana: {DASHBOARD}",
                 f"  Example trace: {TRACE_ID}", "  Calls routed to it fail fast."):
        assert line in text.splitlines(), line
    (link,) = re.findall(r"^  Trace in Grafana: (\S+)$", text, re.M)
    assert _explore(link)["queries"][0]["query"] == TRACE_ID
    html = render_template("exai.email.html", data, kind="html")
    assert SUMMARY in html and TRACE_ID in html
    assert _hrefs(html)[:3] == [RUNBOOK, DASHBOARD, link]


def test_no_trace_line_when_the_alert_has_no_trace(tmp_path: Path) -> None:
    data = _data(tmp_path, NO_TRACE)
    for name, kind in (("exai.slack.text", "text"), ("exai.email.text", "text"),
                       ("exai.email.html", "html")):
        rendered = render_template(name, data, kind=kind)
        assert RUNBOOK in rendered and "trace" not in rendered.lower(), name


def test_a_trace_id_label_counts_and_without_grafana_only_the_id_is_shown(tmp_path: Path) -> None:
    labelled = _alert(runbook_url=RUNBOOK, dashboard_url=DASHBOARD)
    labelled["labels"]["trace_id"] = TRACE_ID
    assert f"|{TRACE_ID}>" in render_template("exai.slack.text", _data(tmp_path, labelled))
    bare = _data(tmp_path, _alert(trace_id=TRACE_ID))
    assert f"Example trace: `{TRACE_ID}`" in render_template("exai.slack.text", bare)
    text = render_template("exai.email.text", bare)
    assert f"  Example trace: {TRACE_ID}" in text and "explore" not in text
    assert "Runbook" not in text and "Grafana" not in text


def test_grafana_under_a_sub_path_keeps_it_in_the_trace_link(tmp_path: Path) -> None:
    data = _data(tmp_path, _alert(trace_id=TRACE_ID,
                                  dashboard_url="https://ops.example.org/grafana/d/exai-slos"))
    (link,) = re.findall(r"<([^|>]+)\|" + TRACE_ID, render_template("exai.slack.text", data))
    assert link.startswith("https://ops.example.org/grafana/explore?")


def test_the_trace_link_names_the_provisioned_tempo_datasource() -> None:
    provisioning = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
    sources = yaml.safe_load(provisioning.read_text())["datasources"]
    (tempo,) = [s["uid"] for s in sources if s["type"] == "tempo"]
    template = (TEMPLATES / "exai.tmpl").read_text()
    assert f'"datasource":"{tempo}"' in template and f'"uid":"{tempo}"' in template


def test_resolved_alerts_are_counted_and_coloured(tmp_path: Path) -> None:
    mixed = _data(tmp_path, WITH_TRACE, _alert("resolved", summary="Circuit for moonshot open"))
    text = render_template("exai.slack.text", mixed)
    assert text.startswith("1 firing, 1 resolved\n")
    assert text.index(f"*Firing: {SUMMARY}*") < text.index("*Resolved: Circuit for moonshot open*")
    resolved = _data(tmp_path, _alert("resolved", runbook_url=RUNBOOK))
    assert render_template("exai.title", resolved) == (
        "[RESOLVED] ExaiProviderCircuitOpen (critical)")
    assert render_template("exai.slack.color", resolved) == "good"
    assert render_template("exai.email.text", resolved).startswith(
        "[RESOLVED] ExaiProviderCircuitOpen (critical): 0 firing, 1 resolved\n")


def test_slack_text_escapes_what_slack_reads_as_markup(tmp_path: Path) -> None:
    data = _data(tmp_path, _alert(summary="p95 < 30s & <!channel>"))
    assert "*Firing: p95 &lt; 30s &amp; &lt;!channel&gt;*" in render_template(
        "exai.slack.text", data)
    html = render_template("exai.email.html", data, kind="html")
    assert "p95 &lt; 30s &amp; &lt;!channel&gt;" in html


# --- render.sh: receivers from the environment, secrets as files -------------------------------

FULL_ENV = {
    "EXAI_ALERT_WEBHOOK_URL": "https://hooks.example.org/exai",
    "EXAI_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-secret",
    "EXAI_ALERT_SLACK_CHANNEL": "#it's-on-fire",
    "EXAI_ALERT_EMAIL_TO": "oncall@example.org",
    "EXAI_ALERT_SMTP_FROM": "alertmanager@example.org",
    "EXAI_ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
    "EXAI_ALERT_SMTP_AUTH_USERNAME": "alertmanager",
    "EXAI_ALERT_SMTP_AUTH_PASSWORD": "smtp-secret",
}


def _rendered(out: Path, env: dict[str, str], shell: str = "sh") -> dict[str, Any]:
    done = render(out, env, shell)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load((out / "alertmanager.yml").read_text())


def test_secrets_reach_alertmanager_only_as_private_files(tmp_path: Path) -> None:
    config = _rendered(tmp_path, FULL_ENV)
    text = (tmp_path / "alertmanager.yml").read_text()
    assert "slack-secret" not in text and "smtp-secret" not in text
    slack = config["receivers"][0]["slack_configs"][0]
    email = config["receivers"][0]["email_configs"][0]
    for path, value in ((slack["api_url_file"], FULL_ENV["EXAI_ALERT_SLACK_WEBHOOK_URL"]),
                        (email["auth_password_file"], FULL_ENV["EXAI_ALERT_SMTP_AUTH_PASSWORD"])):
        assert Path(path).parent == tmp_path and Path(path).read_text() == value
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "alertmanager.yml").st_mode) == 0o600
    assert config["receivers"][0]["webhook_configs"][0]["url"] == FULL_ENV["EXAI_ALERT_WEBHOOK_URL"]
    assert slack["channel"] == "#it's-on-fire" and email["require_tls"] is True
    assert email["to"] == "oncall@example.org" and email["smarthost"] == "smtp.example.org:587"
    assert config["receivers"][1]["slack_configs"] == [slack]
    assert (tmp_path / "templates").resolve() == TEMPLATES


def test_a_secret_file_given_is_named_as_is(tmp_path: Path) -> None:
    secret = tmp_path / "slack-url"
    secret.write_text("https://hooks.slack.com/services/T0/B0/from-a-file\n")
    config = _rendered(tmp_path / "out", {"EXAI_ALERT_SLACK_WEBHOOK_URL_FILE": str(secret)})
    assert config["receivers"][0]["slack_configs"][0]["api_url_file"] == str(secret)
    assert "channel" not in config["receivers"][0]["slack_configs"][0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alertmanager.yml",
                                                                    "templates"]


@pytest.mark.parametrize(("env", "message"), [
    ({"EXAI_ALERT_EMAIL_TO": "oncall@example.org"}, "EXAI_ALERT_SMTP_FROM is not set"),
    ({k: v for k, v in FULL_ENV.items() if k != "EXAI_ALERT_SMTP_AUTH_PASSWORD"},
     "EXAI_ALERT_SMTP_AUTH_PASSWORD_FILE (or EXAI_ALERT_SMTP_AUTH_PASSWORD) is not set"),
    ({"EXAI_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/x", "EXAI_ALERT_SLACK_CHANNEL":
      "#a\n#b"}, "a value holds a line break"),
], ids=["email-without-sender", "username-without-password", "line-break"])
def test_an_incomplete_receiver_stops_the_start(tmp_path: Path, env: dict[str, str],
                                                message: str) -> None:
    done = render(tmp_path, env)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


def test_render_runs_under_busybox_as_in_the_alertmanager_image(tmp_path: Path) -> None:
    """prom/alertmanager is busybox: its sh and awk, no others, give the same config."""
    busybox = require_binary("busybox")  # scripts/install-test-deps.sh installs it
    applets = tmp_path / "bin"
    applets.mkdir()
    for applet in ("sh", "awk", "mkdir", "mv", "ln", "tr", "dirname", "printf"):
        (applets / applet).symlink_to(busybox)
    env = {**FULL_ENV, "PATH": str(applets)}
    done = render(tmp_path / "busybox", env, shell=str(applets / "sh"))
    assert done.returncode == 0, done.stderr
    _rendered(tmp_path / "sh", FULL_ENV)
    assert ((tmp_path / "busybox" / "alertmanager.yml").read_text()
            == (tmp_path / "sh" / "alertmanager.yml").read_text().replace("/sh/", "/busybox/"))


def test_compose_starts_alertmanager_through_render_sh_with_every_variable() -> None:
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["alertmanager"]
    assert "./backends/alertmanager:/etc/alertmanager:ro" in service["volumes"]
    entrypoint = service["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "/etc/alertmanager/" + RENDER.name]
    out = entrypoint[2]
    assert f"--config.file={out}/alertmanager.yml" in service["command"]
    assert any(str(mount).startswith(out) for mount in service.get("tmpfs", [])), \
        "the rendered config and secret files stay in memory"
    config = AM_CONFIG.read_text()
    values = "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r"\$\{(\w+?)(?:_FILE)?(?::-[^}]*)?\}", values))
    read |= set(re.findall(r"^ *# exai:when (\w+?)(?:_FILE)?\s*$", config, re.M))
    read.add("EXAI_ALERT_WEBHOOK_URL")
    assert read == set(service["environment"]), read ^ set(service["environment"])
    for name, value in service["environment"].items():
        assert value == f"${{{name}:-}}", name


# --- live: a real Alertmanager delivers to Slack and email -----------------------------------

def test_slack_and_email_receive_the_alert_and_its_resolution(tmp_path: Path) -> None:
    webhook, slack = WebhookReceiver().start(), SlackReceiver().start()
    smtp = SMTPReceiver().start()
    am = alertmanager(tmp_path, webhook.url, slack=slack, smtp=smtp)
    now = datetime.now(UTC)
    traced = {"labels": {"alertname": "ExaiNotifyTraced", "severity": "critical"},
              "annotations": {"summary": "A traced alert", "runbook_url": RUNBOOK,
                              "dashboard_url": DASHBOARD, "trace_id": TRACE_ID},
              "startsAt": now.isoformat()}
    plain = {"labels": {"alertname": "ExaiNotifyPlain", "severity": "critical"},
             "annotations": {"summary": "A plain alert", "runbook_url": RUNBOOK},
             "startsAt": now.isoformat()}
    try:
        am.proc.start()
        start = time.monotonic()
        am.post_alerts([traced, plain])
        wait_until(lambda: len(slack.messages) >= 2 and len(smtp.mails) >= 2, timeout=30,
                   what="two Slack messages and two mails", interval=0.2)
        delivered = time.monotonic() - start

        (message,) = slack.received("[FIRING:1] ExaiNotifyTraced (critical)")
        attachment = message.payload["attachments"][0]
        assert message.problems == [] and message.payload["channel"] == SlackReceiver.channel
        assert attachment["color"] == "danger" and attachment["title_link"] == DASHBOARD
        assert f"<{RUNBOOK}|Runbook>" in attachment["text"]
        assert f"<{DASHBOARD}|Grafana dashboard>" in attachment["text"]
        assert f"|{TRACE_ID}>" in attachment["text"] and "*Firing: A traced alert*" in message.text
        (other,) = slack.received("[FIRING:1] ExaiNotifyPlain (critical)")
        assert "Example trace" not in other.text and f"<{RUNBOOK}|Runbook>" in other.text

        (mail,) = smtp.received("ExaiNotifyTraced")
        assert mail.message["Subject"] == "[FIRING:1] ExaiNotifyTraced (critical): A traced alert"
        assert mail.auth == (SMTPReceiver.username, SMTPReceiver.password)
        assert (mail.mail_from, mail.rcpt_to) == (SMTPReceiver.sender, [SMTPReceiver.recipient])
        assert mail.message.get_content_type() == "multipart/alternative"
        assert f"  Runbook: {RUNBOOK}" in mail.body("plain").splitlines()
        assert f"  Example trace: {TRACE_ID}" in mail.body("plain").splitlines()
        assert RUNBOOK in _hrefs(mail.body("html"))
        assert "trace" not in smtp.received("ExaiNotifyPlain")[0].body("plain").lower()
        assert {a["labels"]["alertname"] for n in webhook.notifications for a in n["alerts"]} == {
            "ExaiNotifyTraced", "ExaiNotifyPlain"}

        am.post_alerts([{**traced, "endsAt": (now + timedelta(seconds=1)).isoformat()}])
        wait_until(lambda: bool(slack.received("[RESOLVED] ExaiNotifyTraced")
                                and smtp.received("[RESOLVED] ExaiNotifyTraced")), timeout=30,
                   what="the resolution in Slack and by mail", interval=0.2)
        (resolved,) = slack.received("[RESOLVED] ExaiNotifyTraced")
        assert resolved.payload["attachments"][0]["color"] == "good"
        assert "0 firing, 1 resolved" in resolved.text
        assert "*Resolved: A traced alert*" in resolved.text
    finally:
        am.proc.stop(timeout=10)
        for receiver in (webhook, slack, smtp):
            receiver.stop()
    print(f"\nMEASURED notifications: Slack and email {delivered:.1f}s after the alerts were posted"
          " (group_wait 1s)")
