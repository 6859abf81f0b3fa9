"""The WebSocket token: which one the daemon requires, and which one a local client presents.

Authentication is on by default. With ``EXAI_WS_TOKEN`` set, that is the token. Without it the
daemon generates one at first start and keeps it in a file only the user can read
(``EXAI_WS_TOKEN_FILE``, default ``~/.config/exai/ws-token``); ``exai chat``, ``exai loadgen`` and
``exai mcp`` read the same file, so a local user never has to copy it. Running with no token at
all takes ``EXAI_WS_AUTH_DISABLED=true``.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .config import Settings

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class ServerToken:
    """The token hellos must carry (None: authentication explicitly disabled) and its source."""

    value: str | None
    source: str


def server_token(settings: Settings) -> ServerToken:
    """The daemon's token: the configured one, else the token file's, else a new one written
    to the token file. Raises ``OSError`` when the file can be neither read nor written."""
    if settings.ws_auth_disabled:
        return ServerToken(None, "EXAI_WS_AUTH_DISABLED=true")
    configured = settings.ws_token.get_secret_value()
    if configured:
        return ServerToken(configured, "EXAI_WS_TOKEN")
    path = settings.token_file
    existing = read_token_file(path)
    if existing:
        return ServerToken(existing, str(path))
    return ServerToken(_create_token_file(path), f"{path} (generated)")


def client_token(settings: Settings) -> str:
    """The token a local client presents: ``EXAI_WS_TOKEN``, else the daemon's token file."""
    configured = settings.ws_token.get_secret_value()
    if configured:
        return configured
    return read_token_file(settings.token_file) or ""


def read_token_file(path: Path) -> str | None:
    """The token in ``path``, or None when there is none. A file others can read is made
    private first: the token is as good as a password."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            path.chmod(_PRIVATE_FILE)
            log.warning("token file %s was readable by others; made it private (0600)", path)
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, PermissionError) as error:
        raise OSError(f"cannot read the token file {path}: {type(error).__name__}") from None
    return token or None


def _create_token_file(path: Path) -> str:
    """Write a new random token to ``path`` atomically, readable by the user alone."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path.parent.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(token + "\n")
        try:
            os.link(temporary, path)  # fails if another daemon created it meanwhile
        except FileExistsError:
            existing = read_token_file(path)
            if existing:
                return existing
            os.replace(temporary, path)  # an empty file holds no token: ours replaces it
    finally:
        temporary.unlink(missing_ok=True)
    return token
