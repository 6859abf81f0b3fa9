"""Debian's Alertmanager (0.25) with backends/alertmanager/alertmanager.yml, and a test webhook.

Alertmanager 0.25 neither expands environment variables nor supports webhook ``url_file``, so the
config names the compose-side receiver URL once (DEFAULT_WEBHOOK_URL). Like the compose entrypoint
described in docs/pipeline.md, the harness substitutes that URL, here with a loopback receiver, and
shortens group_wait / group_interval so a notification arrives in seconds (test-only override).
"""

from __future__ import annotations

import json
import subprocess
import time
from email.message import Message
from pathlib import Path
from typing import Any

import yaml

from .loopback_http import LoopbackHTTPServer
from .procs import ConfiguredServer, free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "backends" / "alertmanager" / "alertmanager.yml"
DEFAULT_WEBHOOK_URL = "http://alert-webhook:9095/alerts"
FAST_TIMING = {"group_wait": "1s", "group_interval": "1s"}


def render_config(webhook_url: str, *, fast: bool = True) -> str:
    """The real config with the webhook URL substituted (and, if ``fast``, short grouping waits)."""
    text = AM_CONFIG.read_text()
    if DEFAULT_WEBHOOK_URL not in text:
        raise AssertionError(f"{AM_CONFIG} no longer names {DEFAULT_WEBHOOK_URL}")
    data = yaml.safe_load(text.replace(DEFAULT_WEBHOOK_URL, webhook_url))
    if fast:
        routes = [data["route"], *data["route"].get("routes", [])]
        for route in routes:
            for key, value in FAST_TIMING.items():
                if key in route or route is data["route"]:
                    route[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)


class Alertmanager(ConfiguredServer):
    name = "alertmanager"

    def argv(self) -> list[str]:
        return [require_binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.config}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--cluster.listen-address=",
                "--log.level=warn"]


def alertmanager(workdir: Path, webhook_url: str) -> Alertmanager:
    """An Alertmanager on a free loopback port whose config passed ``amtool check-config``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(render_config(webhook_url))
    checked = check_config(config)
    if checked.returncode != 0:
        raise RuntimeError(f"amtool check-config failed:\n{checked.stdout}{checked.stderr}")
    return Alertmanager(workdir, free_port(), config)


class WebhookReceiver(LoopbackHTTPServer):
    """Records every Alertmanager webhook notification it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.notifications: list[dict[str, Any]] = []

    def on_post(self, path: str, headers: Message, body: bytes) -> tuple[bytes, str]:
        payload = json.loads(body or b"{}")
        payload["_received_at"] = time.time()
        with self._lock:
            self.notifications.append(payload)
        return b"", "text/plain"

    @property
    def url(self) -> str:
        return f"{self.base_url}/alerts"

    def alerts(self, alertname: str, **labels: str) -> list[tuple[float, str, dict[str, Any]]]:
        """(received_at, status, alert) for every delivered alert matching name and labels."""
        with self._lock:
            found = []
            for note in self.notifications:
                for alert in note.get("alerts", []):
                    alert_labels = alert.get("labels", {})
                    if alert_labels.get("alertname") != alertname:
                        continue
                    if all(alert_labels.get(k) == v for k, v in labels.items()):
                        found.append((note["_received_at"], alert.get("status", ""), alert))
            return found
