"""Debian's Alertmanager (0.25) with backends/alertmanager/alertmanager.yml, and the receivers it
delivers to in the tests: a webhook, a Slack-compatible incoming webhook and an SMTP server, each
on a real loopback socket.

The config is rendered by backends/alertmanager/render.sh, the start-up step compose runs as the
alertmanager service's entrypoint, from the same environment variables (``receiver_env``). On its
rendered copy the harness then shortens group_wait / group_interval so a notification arrives in
seconds: a documented test-only override, not a second config.
"""

from __future__ import annotations

import base64
import json
import os
import socketserver
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import httpx
import yaml

from .loopback_http import LoopbackHTTPServer, ServedInThread
from .procs import LOOPBACK, ConfiguredServer, free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
AM_DIR = REPO / "backends" / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RENDER = AM_DIR / "render.sh"
TEMPLATES = AM_DIR / "templates"
DEFAULT_WEBHOOK_URL = "http://alert-webhook:9095/alerts"
FAST_TIMING = {"group_wait": "1s", "group_interval": "1s"}


def render(out_dir: Path, env: Mapping[str, str], shell: str = "sh"
           ) -> subprocess.CompletedProcess[str]:
    """render.sh into ``out_dir`` with only ``env`` (and PATH), as compose's entrypoint runs it."""
    return subprocess.run([shell, str(RENDER), str(out_dir)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=30, check=False)


def render_config(out_dir: Path, env: Mapping[str, str], *, fast: bool = True) -> Path:
    """The rendered config (and, if ``fast``, short grouping waits); fails on render.sh's error."""
    done = render(out_dir, env)
    if done.returncode != 0:
        raise RuntimeError(f"render.sh failed:\n{done.stdout}{done.stderr}")
    path = out_dir / "alertmanager.yml"
    if fast:
        data = yaml.safe_load(path.read_text())
        routes = [data["route"], *data["route"].get("routes", [])]
        for route in routes:
            for key, value in FAST_TIMING.items():
                if key in route or route is data["route"]:
                    route[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)


def render_template(name: str, data: Path, kind: str = "text") -> str:
    """``amtool template render`` of the define ``name`` of templates/*.tmpl on ``data`` (JSON in
    the layout of Alertmanager's template.Data); ``kind`` "html" renders as the email HTML is."""
    done = subprocess.run(
        [require_binary("amtool"), "template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
         f"--template.data={data}", f"--template.type={kind}",
         f'--template.text={{{{ template "{name}" . }}}}'],
        capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"amtool template render {name} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Alertmanager(ConfiguredServer):
    name = "alertmanager"

    def argv(self) -> list[str]:
        return [require_binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.config}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--cluster.listen-address=",
                "--log.level=warn"]

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does (``POST /api/v2/alerts``)."""
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


def receiver_env(webhook_url: str, slack: SlackReceiver | None = None,
                 smtp: SMTPReceiver | None = None) -> dict[str, str]:
    """The variables that choose the receivers, as a compose user sets them in .env."""
    env = {"EXAI_ALERT_WEBHOOK_URL": webhook_url}
    if slack is not None:
        env |= {"EXAI_ALERT_SLACK_WEBHOOK_URL": slack.url,
                "EXAI_ALERT_SLACK_CHANNEL": slack.channel}
    if smtp is not None:
        env |= smtp.environment()
    return env


def alertmanager(workdir: Path, webhook_url: str, *, slack: SlackReceiver | None = None,
                 smtp: SMTPReceiver | None = None) -> Alertmanager:
    """An Alertmanager on a free loopback port whose rendered config passed ``amtool check-config``,
    delivering to the webhook, and to Slack and email when their receivers are given."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = render_config(workdir / "config", receiver_env(webhook_url, slack, smtp))
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


@dataclass
class SlackMessage:
    """One incoming-webhook call: the JSON Slack received and what Slack would refuse in it."""

    path: str
    payload: dict[str, Any]
    problems: list[str]

    @property
    def text(self) -> str:
        """The message as a reader sees it: its text, then each attachment's title and text."""
        parts = [self.payload.get("text") or ""]
        for attachment in self.payload.get("attachments") or []:
            parts += [attachment.get("title") or "", attachment.get("text") or ""]
        return "\n".join(part for part in parts if part)


class SlackReceiver(LoopbackHTTPServer):
    """A Slack incoming webhook (``POST /services/T…/B…/secret``, a JSON body) that records each
    message with what Slack's API would refuse in it, and answers as Slack does: 200 ``ok``."""

    channel = "#exai-alerts"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[SlackMessage] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/services/T00000000/B00000000/loopback-secret"

    def on_post(self, path: str, headers: Message, body: bytes) -> tuple[bytes, str]:
        problems = []
        if path != "/services/T00000000/B00000000/loopback-secret":
            problems.append(f"no_service: {path}")
        if headers.get_content_type() != "application/json":
            problems.append(f"invalid_payload: content type {headers.get_content_type()}")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
            problems.append("invalid_payload: not JSON")
        if not isinstance(payload, dict):
            payload, problems = {}, [*problems, "invalid_payload: not an object"]
        attachments = payload.get("attachments") or []
        if not (payload.get("text") or attachments or payload.get("blocks")):
            problems.append("no_text")
        for attachment in attachments:
            if not isinstance(attachment, dict) or not (attachment.get("fallback")
                                                        or attachment.get("text")):
                problems.append("invalid_attachments")
        with self._lock:
            self.messages.append(SlackMessage(path, payload, problems))
        return b"ok", "text/html"

    def received(self, needle: str) -> list[SlackMessage]:
        with self._lock:
            return [m for m in self.messages if needle in m.text]


@dataclass
class Mail:
    """One message an SMTP client delivered: envelope, the AUTH PLAIN credentials, the message."""

    mail_from: str
    rcpt_to: list[str]
    auth: tuple[str, str] | None
    message: EmailMessage

    def body(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""


@dataclass
class _Session:
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    auth: tuple[str, str] | None = None


class SMTPReceiver(ServedInThread):
    """An SMTP server (RFC 5321: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS) on a
    free loopback port, recording each delivered message. It accepts only ``username`` and
    ``password``, so a delivery also proves which credentials Alertmanager sent."""

    username = "alertmanager"
    password = "loopback-smtp-password"
    sender = "alertmanager@exai.test"
    recipient = "oncall@exai.test"

    def __init__(self) -> None:
        receiver = self
        self.mails: list[Mail] = []

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                session = _Session()
                self.reply("220 127.0.0.1 ESMTP exai loopback")
                for raw in self.rfile:
                    verb, _, arg = raw.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
                    verb = verb.upper()
                    if verb == "EHLO":
                        self.reply("250-127.0.0.1\r\n250-AUTH PLAIN\r\n250 8BITMIME")
                    elif verb == "HELO" or verb == "NOOP":
                        self.reply("250 OK")
                    elif verb == "AUTH":
                        session.auth = receiver._auth(arg, self)
                        self.reply("235 2.7.0 Authentication successful" if session.auth
                                   else "535 5.7.8 Authentication credentials invalid")
                    elif verb == "MAIL":
                        session.mail_from = arg.partition(":")[2].split()[0].strip("<>")
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        session.rcpt_to.append(arg.partition(":")[2].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        receiver._deliver(session, self._data())
                        session = _Session(auth=session.auth)
                        self.reply("250 OK queued")
                    elif verb == "RSET":
                        session = _Session(auth=session.auth)
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("502 5.5.2 Command not recognized")

            def _data(self) -> bytes:
                lines = []
                for raw in self.rfile:
                    if raw in (b".\r\n", b".\n"):
                        break
                    lines.append(raw[1:] if raw.startswith(b"..") else raw)
                return b"".join(lines)

        super().__init__(socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler))

    def _auth(self, arg: str, handler: socketserver.StreamRequestHandler
              ) -> tuple[str, str] | None:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN":
            return None
        if not initial:
            handler.wfile.write(b"334 \r\n")
            initial = handler.rfile.readline().decode().strip()
        _identity, user, password = base64.b64decode(initial).decode().split("\0")
        return (user, password) if (user, password) == (self.username, self.password) else None

    def _deliver(self, session: _Session, data: bytes) -> None:
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.mails.append(Mail(session.mail_from, list(session.rcpt_to), session.auth, message))

    @property
    def smarthost(self) -> str:
        return f"{LOOPBACK}:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """The variables that turn Alertmanager's email receiver on and point it here."""
        return {"EXAI_ALERT_EMAIL_TO": self.recipient, "EXAI_ALERT_SMTP_FROM": self.sender,
                "EXAI_ALERT_SMTP_SMARTHOST": self.smarthost, "EXAI_ALERT_SMTP_REQUIRE_TLS": "false",
                "EXAI_ALERT_SMTP_AUTH_USERNAME": self.username,
                "EXAI_ALERT_SMTP_AUTH_PASSWORD": self.password}

    def received(self, needle: str) -> list[Mail]:
        """The mails whose subject holds ``needle``."""
        with self._lock:
            return [m for m in self.mails if needle in str(m.message["Subject"])]

