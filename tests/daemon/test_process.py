"""The installed ``exai`` commands as separate processes: serve, fake-llm, chat and loadgen.

Also: with no collector listening, the daemon serves exactly as before, its memory stays bounded
and the console gets a warning per exporter, not a flood.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.harness.exai_process import EXAI, TOKEN, spawn_daemon
from tests.harness.procs import ManagedProcess, free_port


def _serve(tmp_path: Path, upstream_port: int, protocol: str) -> tuple[ManagedProcess, int]:
    dead_collector = free_port()
    proc, url = spawn_daemon(
        tmp_path, upstream_port, EXAI_RATE_LIMIT_PER_SEC="10000",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead_collector}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_BLRP_SCHEDULE_DELAY="200", OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_EXPORTER_OTLP_TIMEOUT="1")
    return proc, int(url.rsplit(":", 1)[1])


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> \
        subprocess.CompletedProcess:
    import os
    return subprocess.run([EXAI, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "EXAI_WS_TOKEN": TOKEN, **(env or {})})


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_no_collector_listening_changes_nothing_for_clients(tmp_path, fake_llm_process, protocol):
    daemon, ws_port = _serve(tmp_path, fake_llm_process.port, protocol)
    url = f"ws://127.0.0.1:{ws_port}"
    try:
        warm = _run("loadgen", "--url", url, "--calls", "100", "--concurrency", "8", "--json")
        assert warm.returncode == 0, warm.stderr
        rss_before = psutil.Process(daemon.process.pid).memory_info().rss
        load = _run("loadgen", "--url", url, "--calls", "600", "--concurrency", "8", "--json")
        assert load.returncode == 0, load.stderr
        summary = json.loads(load.stdout)
        assert summary["succeeded"] == 600 and summary["failed_by_code"] == {}
        assert summary["rejected"] == 0
        rss_after = psutil.Process(daemon.process.pid).memory_info().rss
        # bounded queues: 600 more calls' telemetry cannot pile up in memory
        assert rss_after - rss_before < 40 * 1024 * 1024, (rss_before, rss_after)

        chat = _run("chat", "hello from the CLI", "--url", url)
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip(), "the answer is printed"
        assert "trace_id: " in chat.stderr and "cost: $" in chat.stderr
    finally:
        daemon.stop()
    log = (tmp_path / "serve.log").read_text()
    export_warnings = [line for line in log.splitlines()
                       if " WARNING opentelemetry" in line or " ERROR opentelemetry" in line]
    assert 1 <= len(export_warnings) <= 6, "\n".join(export_warnings[:20])
    assert "Traceback" not in log


def test_chat_cli_reports_errors_with_the_trace_id(tmp_path, fake_llm_process):
    daemon, ws_port = _serve(tmp_path, fake_llm_process.port, "grpc")
    try:
        result = _run("chat", "hi", "--url", f"ws://127.0.0.1:{ws_port}", "--continuation",
                      "00000000-0000-4000-8000-000000000001")
    finally:
        daemon.stop()
    assert result.returncode == 1
    assert "CONTINUATION_NOT_FOUND" in result.stderr and "trace_id: " in result.stderr
    trace_id = result.stderr.split("trace_id: ")[1].split()[0]
    assert len(trace_id) == 32
    # the daemon's console line about this call shows the same trace id
    log = (tmp_path / "serve.log").read_text()
    assert f"trace_id={trace_id} call " in log, log[-2000:]


@pytest.mark.parametrize("variable, value", [("EXAI_WS_PORT", "not-a-port"),
                                             ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
                                             ("KIMI_API_KEY", "sk-broken\nkey-in-two-lines")])
def test_bad_configuration_is_one_clear_line_not_a_traceback(tmp_path, variable, value):
    import os
    done = subprocess.run([EXAI, "serve"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "EXAI_WS_PORT": "0", "HEALTH_CHECK_PORT": "0",
                               variable: value})
    assert done.returncode == 2
    assert "configuration error" in done.stderr
    assert variable in done.stderr or value in done.stderr
    assert "Traceback" not in done.stderr
    if variable.endswith("_KEY"):
        assert "key-in-two-lines" not in done.stderr, "a secret is never echoed"
