"""The README's first command with nothing set: ``exai serve`` generates a token, and the local
``exai chat``, ``exai loadgen`` and ``exai mcp`` find it without being told."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from app.config import Settings
from app.mcp_bridge.settings import BridgeOptions, BridgeSettings
from tests.harness.exai_process import EXAI, spawn_daemon, spawn_fake_llm
from tests.harness.procs import free_port


def _clean_env(config_home: Path) -> dict[str, str]:
    """The caller's environment without any token, and its own per-user config folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAI_WS_TOKEN")}
    return {**env, "XDG_CONFIG_HOME": str(config_home), "OTEL_SDK_DISABLED": "true"}


@pytest.fixture
def served(tmp_path):
    fake, upstream_port = spawn_fake_llm(tmp_path)
    config_home = tmp_path / "config"
    # Started with the caller's environment less every token variable: nothing is configured.
    unset = {name: "" for name in ("EXAI_WS_TOKEN", "EXAI_WS_TOKEN_FILE")}
    daemon, url = spawn_daemon(tmp_path, upstream_port, **unset,
                               XDG_CONFIG_HOME=str(config_home), OTEL_SDK_DISABLED="true")
    yield config_home, url, tmp_path
    daemon.stop()
    fake.stop()


def _exai(*argv: str, config_home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXAI, *argv], capture_output=True, text=True, timeout=60,
                          env=_clean_env(config_home))


def test_the_generated_token_is_found_by_the_cli_of_the_same_user(served):
    config_home, url, workdir = served
    token_file = config_home / "exai" / "ws-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    log = (workdir / "serve.log").read_text()
    assert f"token from {token_file} (generated)" in log
    assert token_file.read_text().strip() not in log, "the token itself is never logged"

    chat = _exai("chat", "hello with the generated token", "--url", url, config_home=config_home)
    assert chat.returncode == 0, chat.stderr
    assert "trace_id: " in chat.stderr

    load = _exai("loadgen", "--url", url, "--calls", "5", "--json", config_home=config_home)
    assert load.returncode == 0, load.stderr
    assert json.loads(load.stdout)["succeeded"] == 5


def test_another_user_without_the_token_is_refused(served, tmp_path):
    _config_home, url, _workdir = served
    chat = _exai("chat", "hello", "--url", url, config_home=tmp_path / "someone-else")
    assert chat.returncode == 1
    assert "unauthorized" in chat.stderr and "ws-token" in chat.stderr
    assert "Traceback" not in chat.stderr


def test_no_daemon_listening_is_one_line_not_a_traceback(tmp_path):
    chat = _exai("chat", "hello", "--url", f"ws://127.0.0.1:{free_port()}",
                 config_home=tmp_path)
    assert chat.returncode == 1
    assert "cannot reach the daemon" in chat.stderr and "Traceback" not in chat.stderr


def test_the_mcp_bridge_presents_the_token_file(tmp_path, monkeypatch):
    token_file = tmp_path / "ws-token"
    token_file.write_text("bridge-token-0123456789abcdef\n")
    token_file.chmod(0o600)
    monkeypatch.delenv("EXAI_WS_TOKEN", raising=False)
    monkeypatch.setenv("EXAI_WS_TOKEN_FILE", str(token_file))
    bridge = BridgeSettings(Settings(_env_file=None), BridgeOptions(_env_file=None))
    assert bridge.token == "bridge-token-0123456789abcdef"
    monkeypatch.setenv("EXAI_WS_TOKEN", "explicit-wins")
    bridge = BridgeSettings(Settings(_env_file=None), BridgeOptions(_env_file=None))
    assert bridge.token == "explicit-wins"
