"""Where a local client (``exai chat``, ``exai loadgen``, ``exai mcp``) finds the daemon, and the
token it presents: from the daemon's own :class:`~app.config.Settings`, so a client and the daemon
started in the same environment cannot disagree, plus ``EXAI_WS_URL`` for a daemon elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import client_token
from .config import Settings


class ClientOptions(BaseSettings):
    """What only clients read. ``EXAI_WS_URL`` wins over ``EXAI_WS_HOST``/``EXAI_WS_PORT``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    ws_url: str = Field("", alias="EXAI_WS_URL")


@dataclass(frozen=True)
class DaemonEndpoint:
    url: str
    token: str


def daemon_endpoint(settings: Settings, options: ClientOptions,
                    url: str | None = None) -> DaemonEndpoint:
    """The daemon's URL (``url``, else ``EXAI_WS_URL``, else its host and port) and token."""
    resolved = url or options.ws_url or f"ws://{reachable_host(settings.ws_host)}:{settings.ws_port}"
    return DaemonEndpoint(resolved, client_token(settings))


def reachable_host(host: str) -> str:
    """A daemon bound to every address is reached on loopback; IPv6 literals need brackets."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
