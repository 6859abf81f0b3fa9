"""Where the daemon is and how long to wait for it, read once from the environment.

The daemon's address, token and tool timeout come from the daemon's own settings
(:class:`app.config.Settings`), so the bridge and the daemon cannot disagree on a default; with
no ``EXAI_WS_TOKEN`` the token is the one the local daemon generated (:mod:`app.auth`). Only the
bridge's own patience (reconnect backoff, how long a request waits for a connection) is new here.
"""

from __future__ import annotations

from pydantic import Field

from app.client_config import ClientOptions, daemon_endpoint
from app.config import Settings


class BridgeOptions(ClientOptions):
    """The bridge-only knobs, under ``EXAI_MCP_*`` (and the clients' ``EXAI_WS_URL``)."""

    connect_wait_secs: float = Field(10.0, alias="EXAI_MCP_CONNECT_WAIT_SECS", gt=0)
    connect_timeout_secs: float = Field(10.0, alias="EXAI_MCP_CONNECT_TIMEOUT_SECS", gt=0)
    reconnect_base_secs: float = Field(0.2, alias="EXAI_MCP_RECONNECT_BASE_SECS", gt=0)
    reconnect_max_secs: float = Field(10.0, alias="EXAI_MCP_RECONNECT_MAX_SECS", gt=0)
    # Only a safety net past the daemon's own tool timeout, which answers TIMEOUT first.
    deadline_margin_secs: float = Field(10.0, alias="EXAI_MCP_DEADLINE_MARGIN_SECS", ge=0)
    forward_stream_chunks: bool = Field(True, alias="EXAI_MCP_FORWARD_STREAM_CHUNKS")


class BridgeSettings:
    """Everything the bridge needs, resolved: the daemon's URL and token, the fallback tool
    timeout (used until the daemon reports its own), and the bridge's options."""

    def __init__(self, daemon: Settings, options: BridgeOptions, url: str | None = None) -> None:
        endpoint = daemon_endpoint(daemon, options, url)
        self.url = endpoint.url
        self.token = endpoint.token
        self.tool_timeout_secs = daemon.tool_timeout_secs
        self.options = options

    @classmethod
    def from_env(cls, url: str | None = None) -> BridgeSettings:
        return cls(Settings(), BridgeOptions(), url)
