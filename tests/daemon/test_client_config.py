"""Clients (``exai chat``/``loadgen`` and the MCP bridge) resolve the daemon one way."""

from __future__ import annotations

import pytest

from app.client_config import ClientOptions, daemon_endpoint
from app.config import Settings
from app.mcp_bridge.settings import BridgeOptions, BridgeSettings


@pytest.mark.parametrize("host, url", [("0.0.0.0", "ws://127.0.0.1:9001"),
                                       ("::", "ws://[::1]:9001"),
                                       ("::1", "ws://[::1]:9001"),
                                       ("exai.internal", "ws://exai.internal:9001")])
def test_a_daemon_bound_anywhere_is_reached_the_same_way_by_every_client(host, url, monkeypatch):
    monkeypatch.delenv("EXAI_WS_URL", raising=False)
    settings = Settings(_env_file=None, EXAI_WS_HOST=host, EXAI_WS_PORT=9001, EXAI_WS_TOKEN="t")
    assert daemon_endpoint(settings, ClientOptions(_env_file=None)).url == url
    assert BridgeSettings(settings, BridgeOptions(_env_file=None)).url == url


def test_exai_ws_url_then_an_explicit_url_win(monkeypatch):
    monkeypatch.setenv("EXAI_WS_URL", "ws://elsewhere:1")
    settings = Settings(_env_file=None, EXAI_WS_TOKEN="t")
    assert daemon_endpoint(settings, ClientOptions(_env_file=None)).url == "ws://elsewhere:1"
    assert daemon_endpoint(settings, ClientOptions(_env_file=None), "ws://given:2").url == \
        "ws://given:2"
    assert daemon_endpoint(settings, ClientOptions(_env_file=None)).token == "t"
