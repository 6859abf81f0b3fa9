"""Drive real chat traffic through the daemon, as k6 or wrk would, and summarise what happened.

Two shapes of load, over ``sessions`` WebSocket sessions (connections):

- closed loop (``concurrency``): that many callers, each sending its next call once the last was
  answered, so the daemon's pace sets the rate;
- open loop (``rate``): calls start at a fixed arrival rate whatever the daemon's pace, as users
  arrive; at most ``max_in_flight`` are outstanding, and an arrival past that is ``dropped``.

Either stops after ``calls`` calls or after ``duration_s`` (calls in flight then finish). The daemon
limits each session (``EXAI_RATE_LIMIT_PER_SEC``, ``EXAI_RATE_LIMIT_BURST``, ``app/config.py``);
the default number of sessions keeps each one within them: one per caller in a closed loop, and in
an open loop enough that none is sent more than the per-session rate.

What the daemon refuses (``OVER_CAPACITY``) is *rejected*, not failed: it is counted apart, and by
default the call is sent again once its ``retry_after`` has passed (plus a jitter, so that refused
callers do not all come back at once), for up to ``RETRY_WINDOW_SECS``; a call still refused then,
or at once with ``retry=False``, ends *rejected*. Every other error code, and a call that times
out or loses its connection, is *failed*. Latency is that of the attempt the daemon answered
(waits for ``retry_after`` are counted apart), so the slowest call's trace in Grafana shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import re
import signal
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from . import backoff, protocol
from .client import DaemonClient
from .errors import ErrorCode, ExaiError

if TYPE_CHECKING:
    from .config import Settings

PROMPTS = ("Summarise the plot of a short story in two sentences.",
           "Suggest three names for a tabby cat.",
           "Explain what a trace id is to a new engineer.")
DEFAULT_CALLS = 100
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_IN_FLIGHT = 256
RETRY_WINDOW_SECS = 30.0  # how long one call keeps being sent again after OVER_CAPACITY
RETRY_JITTER_CAP_SECS = 5.0  # the most a retry waits past its retry_after
CALL_TIMEOUT_MARGIN_SECS = 10.0  # past the daemon's tool timeout, a call is given up as failed
CONNECT_TIMEOUT_SECS = 15.0  # one session's connect and hello
PROGRESS_INTERVAL_SECS = 0.25
_THREADS_KEPT = 64  # continuation ids a continued call picks from (the newest)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class LoadPlanError(ExaiError, ValueError):
    """A load plan that cannot run; the message names the option to change."""


def parse_duration(text: str) -> float:
    """Seconds in ``30``, ``30s``, ``500ms``, ``2m``, ``1m30s`` or ``1h`` (k6's notation)."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        cleaned += "s"
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise LoadPlanError(f"--duration: {text!r} is not a duration like 30s, 500ms, 2m or 1m30s")
    return sum(float(number) * _UNIT_SECS[unit] for number, unit in parts)


def parse_models(text: str) -> tuple[str, ...]:
    """``a,b,a``: the models calls take in turn (repeat one to weigh it)."""
    models = tuple(name.strip() for name in text.split(","))
    if not models or any(not name for name in models):
        raise LoadPlanError(f"--models: {text!r} is not a comma-separated list of model names")
    return models


@dataclass(frozen=True)
class DaemonLimits:
    """What the daemon allows one session, from its settings (the same environment's, so a
    loadgen and a daemon started side by side agree), and its tool timeout."""

    rate_per_sec: float
    burst: int
    tool_timeout_secs: float

    @classmethod
    def from_settings(cls, settings: Settings) -> DaemonLimits:
        return cls(rate_per_sec=settings.rate_limit_per_sec, burst=settings.rate_limit_burst,
                   tool_timeout_secs=settings.tool_timeout_secs)


@dataclass(frozen=True)
class LoadPlan:
    """What to send. Give ``calls`` or ``duration_s`` (neither: ``DEFAULT_CALLS`` calls), and
    ``concurrency`` or ``rate`` (neither: ``DEFAULT_CONCURRENCY``); ``sessions`` defaults as the
    module says. Calls take ``models`` in turn (None: the daemon's default model); a share of
    them streams, and a share continues a thread an earlier call started."""

    calls: int | None = None
    duration_s: float | None = None
    concurrency: int | None = None
    rate: float | None = None
    sessions: int | None = None
    models: tuple[str | None, ...] = (None,)
    stream_share: float = 0.0
    continue_share: float = 0.0
    retry: bool = True
    max_in_flight: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.calls is not None and self.duration_s is not None:
            raise LoadPlanError("give --calls or --duration, not both")
        if self.concurrency is not None and self.rate is not None:
            raise LoadPlanError("give --concurrency (closed loop) or --rate (open loop), not both")
        if self.max_in_flight is not None and self.rate is None:
            raise LoadPlanError("--max-in-flight bounds an open loop: it needs --rate")
        for name in ("calls", "concurrency", "sessions", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LoadPlanError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        for name in ("duration_s", "rate"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise LoadPlanError(f"--{name.removesuffix('_s')} must be a positive number")
        for name in ("stream_share", "continue_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LoadPlanError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if not self.models:
            raise LoadPlanError("--models: give at least one model")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def resolved(self, limits: DaemonLimits) -> LoadPlan:
        """Every default filled in: what will actually run."""
        plan = self
        if plan.calls is None and plan.duration_s is None:
            plan = replace(plan, calls=DEFAULT_CALLS)
        if plan.rate is None:
            concurrency = plan.concurrency or DEFAULT_CONCURRENCY
            return replace(plan, concurrency=concurrency, sessions=plan.sessions or concurrency)
        sessions = plan.sessions or max(1, math.ceil(plan.rate / limits.rate_per_sec))
        return replace(plan, sessions=sessions,
                       max_in_flight=plan.max_in_flight or DEFAULT_MAX_IN_FLIGHT)

    def warnings(self, limits: DaemonLimits) -> list[str]:
        """What the daemon, if it runs with these limits, will refuse (a resolved plan)."""
        sessions = self.sessions or 1
        if self.rate is not None and self.rate / sessions > limits.rate_per_sec:
            return [f"{self.rate:g} calls/s over {_sessions(sessions)} is "
                    f"{self.rate / sessions:g}/s per session, over the daemon's "
                    f"{limits.rate_per_sec:g}/s (EXAI_RATE_LIMIT_PER_SEC): expect rejections "
                    "(OVER_CAPACITY); more --sessions avoid them"]
        return []

    def describe(self) -> str:
        """One line: the shape, the sessions and when it stops (a resolved plan)."""
        shape = (f"open loop at {self.rate:g} calls/s" if self.rate is not None
                 else f"closed loop, concurrency {self.concurrency}")
        until = f"{self.calls} calls" if self.calls is not None else f"{self.duration_s:g} s"
        return f"{shape}, {_sessions(self.sessions or 1)}, {until}"


@dataclass
class LoadSummary:
    """What happened. ``calls`` = ``succeeded`` + ``failed`` + ``rejected_calls``; ``rejected``
    counts every ``OVER_CAPACITY`` answer, retried or not."""

    plan: LoadPlan
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    failed_by_code: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    rejected_by_scope: Counter[str] = field(default_factory=Counter)
    rejected_calls: int = 0
    retry_wait_s: float = 0.0
    dropped: int = 0
    streamed: int = 0
    continued: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    slowest: tuple[float, str | None] | None = None
    failure: tuple[str, str | None] | None = None  # the first failure's code and trace id
    rejection_trace_id: str | None = None
    first_sent: float | None = None
    last_sent: float | None = None
    stopped_by: str | None = None  # the signal that ended the run early

    @property
    def succeeded(self) -> int:
        return len(self.latencies_s)

    @property
    def failed(self) -> int:
        return sum(self.failed_by_code.values())

    @property
    def calls(self) -> int:
        """Calls made, each counted once however often it was sent again."""
        return self.succeeded + self.failed + self.rejected_calls

    @property
    def calls_per_sec(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def sent_per_sec(self) -> float:
        """The arrival rate achieved: calls started per second between the first and last."""
        if self.first_sent is None or self.last_sent is None or self.last_sent <= self.first_sent:
            return 0.0
        return (self.calls + self.dropped - 1) / (self.last_sent - self.first_sent)

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        if len(self.latencies_s) == 1:
            return self.latencies_s[0]
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, object]:
        plan = {key: value for key, value in asdict(self.plan).items() if value is not None}
        return {"calls": self.calls, "succeeded": self.succeeded,
                "rejected": self.rejected, "rejected_by_scope": dict(self.rejected_by_scope),
                "rejected_calls": self.rejected_calls,
                "retry_wait_s": round(self.retry_wait_s, 3),
                "failed": self.failed, "failed_by_code": dict(self.failed_by_code),
                "dropped": self.dropped,
                "elapsed_s": round(self.elapsed_s, 3),
                "calls_per_sec": round(self.calls_per_sec, 2),
                "sent_per_sec": round(self.sent_per_sec, 2),
                "p50_ms": _ms(self.percentile(50)), "p95_ms": _ms(self.percentile(95)),
                "p99_ms": _ms(self.percentile(99)),
                "max_ms": _ms(max(self.latencies_s, default=0.0)),
                "slowest_trace_id": self.slowest[1] if self.slowest else None,
                "failure_code": self.failure[0] if self.failure else None,
                "failure_trace_id": self.failure[1] if self.failure else None,
                "rejection_trace_id": self.rejection_trace_id,
                "streamed": self.streamed, "continued": self.continued,
                "by_model": dict(self.by_model), "stopped_by": self.stopped_by, "plan": plan}

    def lines(self) -> list[str]:
        """The summary as a person reads it."""
        by_code = ", ".join(f"{code} {n}" for code, n in self.failed_by_code.most_common())
        scopes = ", ".join(f"{scope} {n}" for scope, n in self.rejected_by_scope.most_common())
        lines = [("plan", self.plan.describe())]
        if self.stopped_by:
            lines.append(("stopped", f"early, by {self.stopped_by}: nothing was sent after it, "
                                     "and the calls in flight finished"))
        lines += [
                 ("calls", f"{self.calls} in {self.elapsed_s:.2f} s: "
                           f"{self.calls_per_sec:.1f} calls/s"),
                 ("succeeded", str(self.succeeded)),
                 ("rejected", f"{self.rejected}" + (
                     f" OVER_CAPACITY answers (scope {scopes}); "
                     f"{self.rejected - self.rejected_calls} sent again after retry_after "
                     f"({self.retry_wait_s:.1f} s of waits), {self.rejected_calls} calls ended "
                     "rejected" if self.rejected else "")),
                 ("failed", f"{self.failed}" + (f" ({by_code})" if by_code else ""))]
        if self.dropped:
            lines.append(("dropped", f"{self.dropped} arrivals not sent: "
                                     f"{self.plan.max_in_flight} calls were in flight"))
        lines.append(("latency", f"p50 {_ms(self.percentile(50))} ms  "
                                 f"p95 {_ms(self.percentile(95))} ms  "
                                 f"p99 {_ms(self.percentile(99))} ms  "
                                 f"max {_ms(max(self.latencies_s, default=0.0))} ms"))
        mix = ", ".join(f"{model} {n}" for model, n in sorted(self.by_model.items()))
        lines.append(("mix", f"{mix or 'none answered'}; {self.streamed} streamed, "
                             f"{self.continued} continued a thread"))
        if self.slowest:
            lines.append(("slowest", f"trace_id {self.slowest[1]} ({_ms(self.slowest[0])} ms)"))
        if self.failure:
            lines.append(("a failure", f"trace_id {self.failure[1] or '-'} ({self.failure[0]})"))
        if self.rejection_trace_id:
            lines.append(("a rejection", f"trace_id {self.rejection_trace_id}"))
        if self.rejected_by_scope.get("session"):
            lines.append(("note", "the daemon limits each session's calls/s "
                                  "(EXAI_RATE_LIMIT_PER_SEC, EXAI_RATE_LIMIT_BURST): give more "
                                  "--sessions, or a --rate"))
        width = max(len(label) for label, _ in lines)
        return [f"{label:>{width}}  {text}" for label, text in lines]


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def retry_wait(retry_after: float | None, attempt: int,
               rand: backoff.Rand = random.random) -> float:
    """How long to wait before sending a refused call again: never less than the daemon's
    ``retry_after`` (1 s when it sent none), plus a jitter that grows with each refusal."""
    after = 1.0 if retry_after is None else retry_after
    return after + backoff.full_jitter(attempt, max(after, 0.01), RETRY_JITTER_CAP_SECS, rand)


OnProgress = Callable[[LoadSummary, float], None]


async def run_load(url: str, token: str, plan: LoadPlan, limits: DaemonLimits | None = None,
                   on_progress: OnProgress | None = None,
                   stop_signals: tuple[signal.Signals, ...] = ()) -> LoadSummary:
    """Run ``plan`` against the daemon at ``url``; ``on_progress(summary, elapsed_s)`` is called
    every ``PROGRESS_INTERVAL_SECS`` and once at the end. ``limits`` (default: this environment's
    settings) fill the plan's defaults. The first of ``stop_signals`` ends the run early (nothing
    more is sent, the calls in flight finish, and the summary says so); a second one acts as if
    the run had not been there to catch it."""
    if limits is None:
        from .config import Settings

        limits = DaemonLimits.from_settings(Settings())
    run = _Run(plan.resolved(limits), limits)
    clients = await _connect(url, token, run.plan.sessions or 1)
    ticker = asyncio.create_task(_tick(run, on_progress)) if on_progress else None
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        for each in stop_signals:
            loop.remove_signal_handler(each)
        run.stop(sig.name)

    for sig in stop_signals:
        loop.add_signal_handler(sig, stop, sig)
    try:
        await run.drive(clients)
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        if ticker is not None:
            ticker.cancel()
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    if on_progress is not None:
        on_progress(run.summary, run.summary.elapsed_s)
    return run.summary


async def _connect(url: str, token: str, sessions: int) -> list[DaemonClient]:
    """``sessions`` sessions, one hello at a time: the daemon limits a client's connections that
    have not said hello yet (``EXAI_MAX_CONNECTIONS_PER_CLIENT``)."""
    clients: list[DaemonClient] = []
    try:
        for _ in range(sessions):
            async with asyncio.timeout(CONNECT_TIMEOUT_SECS):
                clients.append(await DaemonClient.connect(url, token))
    except BaseException:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        raise
    return clients


async def _tick(run: _Run, on_progress: OnProgress) -> None:
    while True:
        on_progress(run.summary, run.elapsed())
        await asyncio.sleep(PROGRESS_INTERVAL_SECS)


class _Run:
    """One run of a resolved plan: picks each call's arguments, sends it, tallies the answer."""

    def __init__(self, plan: LoadPlan, limits: DaemonLimits) -> None:
        self.plan = plan
        self.limits = limits
        self.summary = LoadSummary(plan)
        self._rng = random.Random(plan.seed)  # the mix: streamed, continued, which thread
        self._jitter = random.Random(plan.seed + 1)  # retries' waits, apart from the mix
        self._numbers = itertools.count()
        self._models = itertools.cycle(plan.models)
        self._prompts = itertools.cycle(PROMPTS)
        self._threads: deque[str] = deque(maxlen=_THREADS_KEPT)
        self._started = time.monotonic()
        self._deadline: float | None = None
        self._stopped = asyncio.Event()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def stop(self, why: str) -> None:
        """Send nothing more: the calls in flight finish, those waiting to be sent again end."""
        self.summary.stopped_by = why
        self._stopped.set()

    async def _pause(self, secs: float) -> bool:
        """Wait ``secs``; False when the run was stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, secs)):
                await self._stopped.wait()
        return not self._stopped.is_set()

    async def drive(self, clients: list[DaemonClient]) -> None:
        self._started = time.monotonic()
        if self.plan.duration_s is not None:
            self._deadline = self._started + self.plan.duration_s
        try:
            if self.plan.rate is not None:
                await self._open_loop(clients, self.plan.rate)
            else:
                await asyncio.gather(*(self._caller(clients[i % len(clients)])
                                       for i in range(self.plan.concurrency or 1)))
        finally:
            self.summary.elapsed_s = self.elapsed()

    def _more(self, number: int, at: float) -> bool:
        """Whether call ``number`` (counted from 0), due at ``at``, belongs to the run."""
        if self._stopped.is_set():
            return False
        if self.plan.calls is not None:
            return number < self.plan.calls
        return self._deadline is None or at < self._deadline

    async def _caller(self, client: DaemonClient) -> None:
        """One closed-loop caller: the next call once the last was answered."""
        while self._more(number := next(self._numbers), time.monotonic()):
            self._sent(time.monotonic())
            await self._call(client, number)

    async def _open_loop(self, clients: list[DaemonClient], rate: float) -> None:
        """Call ``number`` starts at ``number / rate`` s, on session ``number % sessions``."""
        in_flight: set[asyncio.Task[None]] = set()
        limit = self.plan.max_in_flight or DEFAULT_MAX_IN_FLIGHT
        try:
            for number in itertools.count():
                due = self._started + number / rate
                if not self._more(number, due) or not await self._pause(due - time.monotonic()):
                    break
                self._sent(time.monotonic())
                if len(in_flight) >= limit:
                    self.summary.dropped += 1
                    continue
                task = asyncio.create_task(self._call(clients[number % len(clients)], number))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            # Each call is bounded: its attempts time out, and its retries stop within the window.
            await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:
                task.cancel()

    def _sent(self, now: float) -> None:
        if self.summary.first_sent is None:
            self.summary.first_sent = now
        self.summary.last_sent = now

    def _arguments(self, number: int) -> tuple[dict[str, Any], str | None]:
        """The chat arguments of call ``number``, and the thread it continues (if it does)."""
        model = next(self._models)
        arguments: dict[str, Any] = {"prompt": next(self._prompts),
                                     "stream": self._rng.random() < self.plan.stream_share}
        if model:
            arguments["model"] = model
        thread = None
        if self._rng.random() < self.plan.continue_share and self._threads:
            thread = self._rng.choice(self._threads)
            arguments["continuation_id"] = thread
        return arguments, thread

    async def _call(self, client: DaemonClient, number: int) -> None:
        arguments, thread = self._arguments(number)
        timeout = (client.tool_timeout_secs or self.limits.tool_timeout_secs) \
            + CALL_TIMEOUT_MARGIN_SECS
        retry_until = time.monotonic() + RETRY_WINDOW_SECS
        if self._deadline is not None:
            retry_until = min(retry_until, self._deadline)
        for attempt in itertools.count():
            started = time.perf_counter()
            try:
                frame = await client.call_tool("chat", arguments, timeout=timeout)
            except (ExaiError, TimeoutError, OSError, ConnectionClosed) as exc:
                self._failed(type(exc).__name__, None)
                return
            latency = time.perf_counter() - started
            reply = protocol.parse_call_reply(frame)
            if reply.error is None:
                self._succeeded(reply, latency, arguments, thread)
                return
            if reply.error.code != ErrorCode.OVER_CAPACITY:
                self._failed(reply.error.code, reply.trace_id)
                return
            self._rejected(reply)
            wait = retry_wait(reply.error.retry_after, attempt, self._jitter.random)
            if not self.plan.retry or time.monotonic() + wait > retry_until \
                    or not await self._pause(wait):
                self.summary.rejected_calls += 1
                return
            self.summary.retry_wait_s += wait

    def _succeeded(self, reply: protocol.CallReply, latency: float, arguments: dict[str, Any],
                   thread: str | None) -> None:
        summary = self.summary
        summary.latencies_s.append(latency)
        if summary.slowest is None or latency > summary.slowest[0]:
            summary.slowest = (latency, reply.trace_id)
        summary.by_model[str(reply.metadata.get("model") or "unknown")] += 1
        summary.streamed += bool(arguments["stream"])
        answered_thread = reply.metadata.get("continuation_id")
        if thread is not None:
            summary.continued += answered_thread == thread
        elif isinstance(answered_thread, str):
            self._threads.append(answered_thread)

    def _failed(self, code: str, trace_id: str | None) -> None:
        self.summary.failed_by_code[code] += 1
        if self.summary.failure is None:
            self.summary.failure = (code, trace_id)

    def _rejected(self, reply: protocol.CallReply) -> None:
        assert reply.error is not None
        self.summary.rejected += 1
        self.summary.rejected_by_scope[reply.error.scope or "unknown"] += 1
        if self.summary.rejection_trace_id is None:
            self.summary.rejection_trace_id = reply.trace_id
