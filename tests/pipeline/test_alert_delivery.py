"""One alert end to end: a daemon-style gauge pushed over OTLP -> collector -> remote write ->
Prometheus rule -> Alertmanager -> webhook, Slack and email (loopback receivers speaking Slack's
incoming-webhook API and SMTP), and back to resolved when the gauge returns to 0."""

from __future__ import annotations

import time

from tests.harness.procs import wait_until

from .conftest import Stack
from .telemetry import GaugePusher, unique_service

ALERT = "ExaiProviderCircuitOpen"
METRIC = "exai.gen_ai.circuit_breaker.state"


def test_circuit_open_alert_reaches_webhook_slack_and_email_and_resolves(stack: Stack) -> None:
    pusher = GaugePusher(stack.collector.otlp_grpc, unique_service("exai-daemon-alert"), METRIC)
    try:
        start = time.monotonic()
        pusher.set(2, {"gen_ai.provider.name": "z_ai"})
        prom = stack.prometheus
        series = 'exai_gen_ai_circuit_breaker_state{gen_ai_provider_name="z_ai"}'
        wait_until(lambda: prom.scalar(f"max({series})") == 2, timeout=60,
                   what=f"{series} == 2 in Prometheus", interval=0.5)
        in_prometheus = time.monotonic() - start

        def delivered(status: str) -> bool:
            alerts = stack.webhook.alerts(ALERT, gen_ai_provider_name="z_ai")
            return any(s == status for _, s, _ in alerts)

        wait_until(lambda: delivered("firing"), timeout=120, what=f"{ALERT} firing at the webhook",
                   interval=0.5)
        fired = time.monotonic() - start
        _, _, alert = next(a for a in stack.webhook.alerts(ALERT, gen_ai_provider_name="z_ai")
                           if a[1] == "firing")
        assert alert["labels"]["severity"] == "critical"
        summary = alert["annotations"]["summary"]
        assert "z_ai" in summary

        # The same notification, formatted for people: the rule's summary and whichever of its
        # runbook and dashboard links the rule has, in Slack's message and in the mail.
        wait_until(lambda: bool(stack.slack.received(f"*Firing: {summary}*")
                                and stack.smtp.received(ALERT)),
                   timeout=30, what=f"{ALERT} in Slack and by mail", interval=0.5)
        (message, *_) = stack.slack.received(f"*Firing: {summary}*")
        assert message.problems == [] and f"{ALERT} (critical)" in message.text
        mail = next(m for m in stack.smtp.received(ALERT) if summary in m.body("plain"))
        for key, label in (("runbook_url", "Runbook"), ("dashboard_url", "Grafana dashboard")):
            if key in alert["annotations"]:
                assert f"<{alert['annotations'][key]}|{label}>" in message.text
                assert alert["annotations"][key] in mail.body("plain")

        pusher.set(0, {"gen_ai.provider.name": "z_ai"})
        back = time.monotonic()
        wait_until(lambda: delivered("resolved"), timeout=120,
                   what=f"{ALERT} resolved at the webhook", interval=0.5)
        resolved = time.monotonic() - back
        wait_until(lambda: bool(stack.slack.received(f"*Resolved: {summary}*")), timeout=30,
                   what=f"{ALERT} resolved in Slack", interval=0.5)
    finally:
        pusher.shutdown()
    print(f"\nMEASURED alert: metric in Prometheus after {in_prometheus:.1f}s, firing notification "
          f"(webhook, Slack, email) after {fired:.1f}s (rule for: 30s, eval 1s, group_wait 1s), "
          f"resolved notification {resolved:.1f}s after the gauge returned to 0")
