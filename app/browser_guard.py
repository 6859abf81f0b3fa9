"""Which WebSocket upgrades a web page may not make. Pure: headers in, a refusal reason out.

Any page the user opens can connect to a loopback port, and browsers always send ``Origin`` on a
WebSocket upgrade, so an upgrade carrying an ``Origin`` that is not allowed is refused. A page
that resolves its own domain to 127.0.0.1 (DNS rebinding) is caught by ``Host``: on a loopback
bind only loopback names (and the configured host) are accepted. Clients that send no ``Origin``
(the CLI, the MCP bridge, SDK clients) are not browsers and pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
ORIGIN_NOT_ALLOWED = "origin_not_allowed"
HOST_NOT_ALLOWED = "host_not_allowed"


def is_loopback(host: str) -> bool:
    """True for loopback names and any address in 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8079`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(origin: str | None, host: str | None, *, bind_host: str,
            allowed_origins: Collection[str], allowed_hosts: Collection[str]) -> str | None:
    """Why this upgrade must be refused (``origin_not_allowed``, ``host_not_allowed``), or None.

    ``Origin`` is compared exactly (scheme, host and port, without a trailing slash), the way
    browsers send it; ``null`` (sandboxed frames, files) is never allowed unless listed.
    ``Host`` is checked when the daemon listens on loopback or when ``allowed_hosts`` is set;
    a daemon bound to a public address without that list accepts any ``Host`` (its clients use
    whatever name reaches it, and the token is what protects it there).
    """
    if origin is not None and origin.strip().lower().rstrip("/") not in allowed_origins:
        return ORIGIN_NOT_ALLOWED
    if is_loopback(bind_host) or allowed_hosts:
        name = host_name(host or "")
        if not (is_loopback(name) or name == bind_host.strip("[]").lower()
                or name in allowed_hosts):
            return HOST_NOT_ALLOWED
    return None


def client_key(address: str) -> str:
    """What the per-client connection limit counts by: the peer address, with every loopback
    address one client (any local process can pick its own 127.0.0.x)."""
    return "loopback" if is_loopback(address) else address
