"""``exai loadgen`` as a user runs it, against ``exai serve`` with its default limits and
``exai fake-llm``: the README's examples are clean, a rate over the daemon's per-session limit is
counted as rejected (not failed), ``retry_after`` is honoured, the duration and the arrival rate
are kept within stated tolerances, the mix of models, streams and threads is what was asked, and
options that cannot run are one clear usage error.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.config import Settings
from app.loadgen import (
    RETRY_JITTER_CAP_SECS,
    DaemonLimits,
    LoadPlan,
    LoadPlanError,
    parse_duration,
    retry_wait,
)
from tests.harness.exai_process import EXAI, TOKEN, spawn_daemon
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Tolerances of the timed checks (the fake upstream answers in milliseconds):
RATE_TOLERANCE = 0.05  # the arrival rate achieved is within 5 % of --rate
DURATION_OVERRUN_SECS = 1.0  # a run ends at most 1 s after --duration (calls in flight finish)


def _readme_loadgen_lines() -> list[list[str]]:
    """Every ``exai loadgen`` command in the README's bash blocks, as argv after the command."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [shlex.split(line, comments=True)[2:] for block in blocks
            for line in block.splitlines() if line.startswith("exai loadgen")]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, fake_llm_process) -> Iterator[str]:
    """``exai serve`` with every limit at its default, on ``exai fake-llm`` (telemetry is off,
    which changes no limit and keeps a missing collector out of the way)."""
    proc, url = spawn_daemon(tmp_path_factory.mktemp("serve"), fake_llm_process.port,
                             OTEL_SDK_DISABLED="true")
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def limits() -> DaemonLimits:
    """The limits the daemon runs with: its defaults, as this environment sees them."""
    return DaemonLimits.from_settings(Settings(_env_file=None))


def _loadgen(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXAI, "loadgen", "--url", url, *options], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "EXAI_WS_TOKEN": TOKEN})


def _summary(url: str, *options: str) -> dict:
    done = _loadgen(url, *options, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["calls"] == summary["succeeded"] + summary["failed"] + \
        summary["rejected_calls"], summary
    return summary


def _fields(stdout: str) -> dict[str, str]:
    """The human summary's lines by label (``  rejected  0`` -> ``{"rejected": "0"}``)."""
    return dict(line.strip().split("  ", 1) for line in stdout.splitlines() if line.strip())


def test_the_readme_examples_run_clean(daemon):
    examples = _readme_loadgen_lines()
    assert examples and examples[0] == ["--calls", "200", "--concurrency", "8"], examples
    for options in examples:
        summary = _summary(daemon, *options)
        print(f"\nexai loadgen {' '.join(options)}: {summary}")
        assert summary["failed"] == 0 and summary["failed_by_code"] == {}, summary
        assert summary["rejected"] == 0 and summary["rejected_calls"] == 0, summary
        assert summary["succeeded"] == summary["calls"] > 0
        assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
        assert TRACE_ID.fullmatch(summary["slowest_trace_id"])
        if options is examples[0]:
            assert summary["calls"] == 200


def test_the_readme_example_prints_a_clean_summary(daemon):
    done = _loadgen(daemon, *_readme_loadgen_lines()[0])
    assert done.returncode == 0, done.stderr
    print("\n" + done.stdout)
    fields = _fields(done.stdout)
    assert fields["succeeded"] == "200" and fields["rejected"] == "0" and fields["failed"] == "0"
    assert "calls/s" in fields["calls"] and "p95" in fields["latency"]
    assert TRACE_ID.search(fields["slowest"]), fields
    assert "Traceback" not in done.stderr


def test_a_rate_over_the_session_limit_is_rejected_not_failed(daemon, limits):
    rate = 3 * limits.rate_per_sec
    done = _loadgen(daemon, "--rate", f"{rate:g}", "--sessions", "1", "--duration", "2s",
                    "--no-retry", "--json")
    assert done.returncode == 0, done.stderr
    assert "over the daemon's" in done.stderr, "the plan is flagged before it runs"
    summary = json.loads(done.stdout)
    print(f"\n{rate:g} calls/s over one session, no retries: {summary}")
    assert summary["calls"] == round(rate * 2)
    assert summary["failed"] == 0 and summary["rejected"] > 0
    assert summary["rejected_calls"] == summary["rejected"] == \
        summary["rejected_by_scope"]["session"]
    assert summary["succeeded"] + summary["rejected_calls"] == summary["calls"]
    # The daemon's token bucket let through at most its burst and its rate since.
    assert summary["succeeded"] <= limits.burst + limits.rate_per_sec * summary["elapsed_s"] + 1
    assert TRACE_ID.fullmatch(summary["rejection_trace_id"])


def test_rejected_calls_are_sent_again_after_retry_after(daemon, limits):
    rate = 3 * limits.rate_per_sec
    done = _loadgen(daemon, "--rate", f"{rate:g}", "--sessions", "1", "--calls", "90")
    assert done.returncode == 0, done.stderr
    fields = _fields(done.stdout)
    print("\n" + done.stdout)
    assert fields["succeeded"] == "90" and fields["failed"] == "0"
    assert "OVER_CAPACITY answers (scope session" in fields["rejected"]
    assert "0 calls ended rejected" in fields["rejected"]


def test_retry_after_is_waited_for(tmp_path, fake_llm_process):
    # 2 calls/s, burst 1: each call after the first is refused once with retry_after ~0.5 s and
    # accepted when sent again after it. A client that did not wait would be refused hundreds
    # of times.
    proc, url = spawn_daemon(tmp_path, fake_llm_process.port, OTEL_SDK_DISABLED="true",
                             EXAI_RATE_LIMIT_PER_SEC="2", EXAI_RATE_LIMIT_BURST="1")
    try:
        summary = _summary(url, "--calls", "4", "--concurrency", "1")
    finally:
        proc.stop()
    print(f"\n{summary}")
    assert summary["succeeded"] == 4 and summary["failed"] == 0 and summary["rejected_calls"] == 0
    assert 3 <= summary["rejected"] <= 6
    assert summary["retry_wait_s"] >= 3 * 0.45 and summary["elapsed_s"] >= 3 * 0.45


def test_duration_and_rate_are_kept(daemon):
    summary = _summary(daemon, "--rate", "20", "--duration", "3s")
    print(f"\nopen loop 20/s for 3 s: sent {summary['sent_per_sec']}/s, "
          f"ended after {summary['elapsed_s']} s")
    assert summary["calls"] == 60  # arrivals at 0, 1/20, ... 59/20 s
    assert abs(summary["sent_per_sec"] - 20) <= 20 * RATE_TOLERANCE
    assert 3.0 - 1 / 20 <= summary["elapsed_s"] <= 3.0 + DURATION_OVERRUN_SECS
    assert summary["failed"] == summary["rejected"] == 0

    closed = _summary(daemon, "--duration", "2s", "--concurrency", "2")
    print(f"closed loop for 2 s: {closed['calls']} calls, ended after {closed['elapsed_s']} s")
    assert 2.0 <= closed["elapsed_s"] <= 2.0 + DURATION_OVERRUN_SECS
    assert closed["succeeded"] > 0 and closed["failed"] == 0


def test_the_mix_of_models_streams_and_threads_is_the_one_asked(daemon, fake_llm_process):
    control = FakeUpstreamControl.on_port(fake_llm_process.port)
    control.reset()
    summary = _summary(daemon, "--calls", "40", "--concurrency", "2",
                       "--models", "glm-4.5-flash,kimi-k2-0905-preview",
                       "--stream-share", "0.5", "--continue-share", "0.5")
    assert summary["by_model"] == {"glm-4.5-flash": 20, "kimi-k2-0905-preview": 20}
    assert 0 < summary["streamed"] < 40
    assert control.stats()["streams_started"] == summary["streamed"], "the upstream streamed them"
    assert 0 < summary["continued"] < 40


def test_an_open_loop_drops_arrivals_past_its_in_flight_bound(daemon, fake_llm_process):
    control = FakeUpstreamControl.on_port(fake_llm_process.port)
    control.config(latency_ms=1500)
    try:
        summary = _summary(daemon, "--rate", "10", "--duration", "1s", "--max-in-flight", "3")
    finally:
        control.config(latency_ms=0)
    assert summary["succeeded"] == 3 and summary["dropped"] == 7, summary


def test_ctrl_c_stops_the_run_with_the_summary_so_far(daemon, fake_llm_process):
    control = FakeUpstreamControl.on_port(fake_llm_process.port)
    before = control.stats()["received"]
    run = subprocess.Popen([EXAI, "loadgen", "--url", daemon, "--rate", "10", "--duration", "60s",
                            "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "EXAI_WS_TOKEN": TOKEN})
    try:
        wait_until(lambda: control.stats()["received"] >= before + 3, 30, "calls to arrive")
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=15)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=5)
    assert run.returncode == 128 + signal.SIGINT, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "SIGINT" and summary["elapsed_s"] < 60
    assert 3 <= summary["calls"] == summary["succeeded"] < 600 and summary["failed"] == 0


# --- options, without a daemon --------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (["--calls", "5", "--duration", "2s"], "give --calls or --duration, not both"),
    (["--rate", "5", "--concurrency", "2"], "--rate (open loop), not both"),
    (["--duration", "5x"], "'5x' is not a duration"),
    (["--rate", "0"], "--rate must be a positive number"),
    (["--stream-share", "1.5"], "--stream-share"),
    (["--models", "glm-4.5-flash,,kimi"], "not a comma-separated list"),
    (["--max-in-flight", "3"], "it needs --rate"),
    (["--stream", "--stream-share", "0.5"], "give --stream or --stream-share"),
])
def test_options_that_cannot_run_are_a_usage_error(options, message):
    result = CliRunner().invoke(app, ["loadgen", "--url", "ws://127.0.0.1:1", *options])
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and message in text, result.output


@pytest.mark.parametrize("text, seconds", [("30", 30.0), ("30s", 30.0), ("500ms", 0.5),
                                           ("2m", 120.0), ("1m30s", 90.0), ("1.5h", 5400.0)])
def test_durations_read_like_k6s(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "1.2.3s", "-3s", "3 s"])
def test_what_is_not_a_duration_is_refused(text):
    with pytest.raises(LoadPlanError, match="is not a duration"):
        parse_duration(text)


def test_retry_waits_never_undercut_retry_after():
    for attempt in range(8):
        assert retry_wait(0.05, attempt, rand=lambda: 0.0) == 0.05
        assert 0.05 < retry_wait(0.05, attempt, rand=lambda: 0.999) <= \
            0.05 + RETRY_JITTER_CAP_SECS
    assert retry_wait(None, 0, rand=lambda: 0.0) == 1.0, "no hint: a second"


def test_default_sessions_keep_each_under_the_session_limit():
    limits = DaemonLimits(rate_per_sec=20, burst=40, tool_timeout_secs=120)
    assert LoadPlan(concurrency=8).resolved(limits).sessions == 8
    assert LoadPlan().resolved(limits).calls == 100
    assert LoadPlan(rate=20).resolved(limits).sessions == 1
    assert LoadPlan(rate=50).resolved(limits).sessions == 3
    assert LoadPlan(rate=50).resolved(limits).warnings(limits) == []
    assert LoadPlan(rate=50, sessions=1).resolved(limits).warnings(limits)
