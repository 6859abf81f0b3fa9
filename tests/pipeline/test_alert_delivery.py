"""One alert end to end: a daemon-style gauge pushed over OTLP -> collector -> remote write ->
Prometheus rule -> Alertmanager -> webhook, and back to resolved when the gauge returns to 0."""

from __future__ import annotations

import time

from tests.harness.procs import wait_until

from .conftest import Stack
from .telemetry import GaugePusher, unique_service

ALERT = "ExaiProviderCircuitOpen"
METRIC = "exai.gen_ai.circuit_breaker.state"


def test_circuit_open_alert_reaches_the_webhook_and_resolves(stack: Stack) -> None:
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
        assert "z_ai" in alert["annotations"]["summary"]

        pusher.set(0, {"gen_ai.provider.name": "z_ai"})
        back = time.monotonic()
        wait_until(lambda: delivered("resolved"), timeout=120,
                   what=f"{ALERT} resolved at the webhook", interval=0.5)
        resolved = time.monotonic() - back
    finally:
        pusher.shutdown()
    print(f"\nMEASURED alert: metric in Prometheus after {in_prometheus:.1f}s, firing notification "
          f"after {fired:.1f}s (rule for: 30s, eval 1s, group_wait 1s), resolved notification "
          f"{resolved:.1f}s after the gauge returned to 0")
