"""The ``exai`` command line: serve, chat, fake-llm, loadgen, mcp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from otel.redaction import escape_controls

if TYPE_CHECKING:
    from .client_config import DaemonEndpoint

if TYPE_CHECKING:
    from .loadgen import LoadPlan, LoadSummary
    from .protocol import CallReply

app = typer.Typer(help="The EX-AI daemon and its tools.", no_args_is_help=True,
                  add_completion=False)
console = Console(stderr=True)
T = TypeVar("T")


def _endpoint(url: str | None) -> DaemonEndpoint:
    """The daemon's URL and token for a client command, as the MCP bridge resolves them."""
    from .client_config import ClientOptions, daemon_endpoint
    from .config import Settings

    return daemon_endpoint(Settings(), ClientOptions(), url)


def _run_client(work: Coroutine[Any, Any, T]) -> T:
    """Run a client command; a daemon that cannot be reached or refuses the hello is one clear
    line (exit 1), not a traceback."""
    from websockets.exceptions import InvalidHandshake

    from .client import DaemonConnectionLost, HandshakeError

    try:
        return asyncio.run(work)
    except HandshakeError as refused:
        hint = (" (the daemon's token: EXAI_WS_TOKEN, or its token file "
                f"{_token_file_hint()})") if refused.error == "unauthorized" else ""
        # soft_wrap: a token file's path must stay on one line, to be copied or grepped
        console.print(f"[red]daemon refused the connection[/red]: {refused}{hint}",
                      soft_wrap=True)
    except (OSError, TimeoutError, InvalidHandshake, DaemonConnectionLost) as error:
        console.print(f"[red]cannot reach the daemon[/red]: {type(error).__name__}: "
                      f"{escape_controls(str(error))[:300]}", soft_wrap=True)
    raise typer.Exit(1)


def _token_file_hint() -> str:
    from .config import Settings

    return str(Settings().token_file)


def _config_error(error: Exception) -> str:
    """One line per bad setting, naming the environment variable and never echoing its value."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
                         for item in errors(include_input=False, include_url=False))
    return str(error)


@app.command()
def serve(log_level: Annotated[str, typer.Option(help="Console log level.")] = "INFO") -> None:
    """Run the daemon, configured from the environment (and ./.env)."""
    import logging
    import time

    from pydantic import ValidationError

    from otel.logs import configure_logging
    from otel.setup import configure_telemetry

    from . import __version__
    from .config import Settings
    from .daemon import Daemon, exit_now

    try:
        settings = Settings()
        telemetry = configure_telemetry(__version__, instance_id=settings.service_instance_id)
    except (ValidationError, ValueError) as error:
        console.print(f"[red]configuration error[/red]: {_config_error(error)}")
        raise typer.Exit(2) from None
    configure_logging(log_level.upper(), telemetry.logger_provider)
    deadline: float | None = None  # set once a signal started the stop
    try:
        deadline = asyncio.run(Daemon(settings, telemetry).run_until_signalled())
    finally:
        if deadline is None:  # the daemon failed to start or crashed: the whole deadline
            deadline = time.monotonic() + settings.shutdown_timeout_secs
        outcome = telemetry.shutdown(max(0.0, deadline - time.monotonic()))
        if telemetry.enabled:
            configure_logging(log_level.upper())  # the console only: the logs bridge is closed
            logging.getLogger("exai.telemetry").log(
                logging.INFO if outcome.complete else logging.WARNING, outcome.summary())
    if outcome.timed_out:
        # At the deadline, with exports still stuck on their threads: the interpreter's teardown
        # would only add to it (its final garbage collection alone took 0.7 s).
        exit_now(0)


@app.command()
def chat(
    prompt: str,
    model: Annotated[str | None, typer.Option(help="Model; default DEFAULT_MODEL.")] = None,
    continuation: Annotated[str | None, typer.Option(help="continuation_id to continue.")] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it streams.")] = False,
    url: Annotated[str | None, typer.Option(help="Daemon URL (EXAI_WS_URL).")] = None,
) -> None:
    """Ask the daemon one question; print the answer, usage, cost and the trace id."""
    from .client import DaemonClient
    from .protocol import parse_call_reply, parse_interim

    async def run() -> dict:
        endpoint = _endpoint(url)
        async with await DaemonClient.connect(endpoint.url, endpoint.token) as client:
            arguments = {"prompt": prompt, "stream": stream}
            if model:
                arguments["model"] = model
            if continuation:
                arguments["continuation_id"] = continuation

            def show(frame: dict) -> None:
                interim = parse_interim(frame)
                if interim is not None and interim.streamed:
                    print(interim.text, end="", flush=True)
                elif interim is not None:
                    console.print(f"[dim]{interim.text}[/dim]")

            return await client.call_tool("chat", arguments, on_frame=show)

    reply = parse_call_reply(_run_client(run()))
    if reply.error is not None:
        console.print(f"[red]{reply.error.code}[/red]: {reply.error.message}")
        console.print(f"trace_id: {reply.trace_id}")
        raise typer.Exit(1)
    if stream:
        print()
    else:
        print(reply.text)
    for line in chat_summary(reply):
        console.print(line, markup=False)


def chat_summary(reply: CallReply) -> list[str]:
    """What ``exai chat`` says after a successful answer. Pure, so that what a reply may lack
    (``usage: null`` when the provider reported none, an unpriced model) is tested without a
    daemon."""
    meta = reply.metadata
    usage = reply.usage
    tokens = ("unknown (the provider reported no usage)" if usage is None else
              f"{usage.input_tokens}/{usage.output_tokens}/{usage.cached_input_tokens}")
    if usage is not None and usage.reasoning_tokens:
        tokens += f" ({usage.reasoning_tokens} of the output reasoning)"
    cost = "unpriced" if reply.cost_usd is None else f"${reply.cost_usd:.6f}"
    return [f"model: {meta.get('provider')}/{meta.get('model')}  tokens in/out/cached: {tokens}"
            f"  cost: {cost}",
            f"continuation_id: {meta.get('continuation_id')}",
            f"trace_id: {reply.trace_id}"]


@app.command("fake-llm")
def fake_llm(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8090,
    latency_ms: Annotated[float, typer.Option(help="Delay before answering.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of calls failing (0-1).")] = 0.0,
    ttft_ms: Annotated[float, typer.Option(help="Delay before the first streamed chunk.")] = 0.0,
    reasoning_tokens: Annotated[int, typer.Option(
        min=0, help="Reason this many tokens before answering, as thinking models do.")] = 0,
) -> None:
    """A simulated OpenAI-compatible upstream for demos, tests and benchmarks."""
    from .fake_llm import FakeLLMConfig, run_fake_llm

    run_fake_llm(host, port, FakeLLMConfig(latency_ms=latency_ms, error_rate=error_rate,
                                           ttft_ms=ttft_ms, reasoning_tokens=reasoning_tokens))


@app.command()
def loadgen(
    url: Annotated[str | None, typer.Option(help="Daemon URL (EXAI_WS_URL).")] = None,
    calls: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many calls (the default, 100, when no --duration).",
        show_default=False)] = None,
    duration: Annotated[str | None, typer.Option(
        help="Stop after this long instead: 30s, 500ms, 2m, 1m30s.", show_default=False)] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, show_default=False,
        help="Closed loop: callers, each sending its next call once the last was answered "
             "(default 4).")] = None,
    rate: Annotated[float | None, typer.Option(
        show_default=False,
        help="Open loop instead: calls started per second, whatever the daemon's pace.")] = None,
    sessions: Annotated[int | None, typer.Option(
        min=1, show_default=False,
        help="WebSocket sessions (connections). Default: one per caller; with --rate, enough "
             "that none is sent more than EXAI_RATE_LIMIT_PER_SEC calls/s.")] = None,
    models: Annotated[str | None, typer.Option(
        "--models", "--model", show_default=False,
        help="Comma-separated models, taken in turn (repeat one to weigh it); default "
             "DEFAULT_MODEL.")] = None,
    stream_share: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, show_default=False,
        help="Share of calls that stream (0-1; default 0).")] = None,
    stream: Annotated[bool, typer.Option(help="Every call streams (--stream-share 1).")] = False,
    continue_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of calls that continue a thread an earlier call "
                               "started (0-1).")] = 0.0,
    retry: Annotated[bool, typer.Option(
        help="Send a call refused with OVER_CAPACITY again once its retry_after has passed "
             "(rejections are counted either way).")] = True,
    max_in_flight: Annotated[int | None, typer.Option(
        min=1, show_default=False,
        help="Open loop: most calls outstanding; arrivals past it are dropped (default "
             "256).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the mix (which calls stream, continue).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Drive chat calls through the daemon (closed loop by --concurrency, or open loop by --rate;
    for --calls or a --duration) and print calls/s, latency percentiles, what the daemon rejected
    (OVER_CAPACITY) apart from what failed, and trace ids to look up in Grafana. Ctrl-C (or
    SIGTERM) stops it early with the summary so far."""
    import signal

    from .config import Settings
    from .loadgen import DaemonLimits, run_load

    limits = DaemonLimits.from_settings(Settings())
    plan = load_plan(calls=calls, duration=duration, concurrency=concurrency, rate=rate,
                     sessions=sessions, models=models, stream_share=stream_share, stream=stream,
                     continue_share=continue_share, retry=retry, max_in_flight=max_in_flight,
                     seed=seed).resolved(limits)
    for warning in plan.warnings(limits):
        console.print(f"[yellow]note[/yellow]: {warning}", soft_wrap=True)
    endpoint = _endpoint(url)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                  TextColumn("{task.fields[tally]}"), console=console,
                  transient=as_json) as progress:
        task = progress.add_task("chat calls", total=plan.calls or plan.duration_s, count="",
                                 tally="")

        def show(summary: LoadSummary, elapsed: float) -> None:
            done: float
            if plan.calls is not None:
                done, count = summary.calls, f"{summary.calls}/{plan.calls}"
            else:
                done = min(elapsed, plan.duration_s or elapsed)
                count = f"{elapsed:.0f}/{plan.duration_s:g} s, {summary.calls} calls"
            progress.update(task, completed=done, count=count,
                            tally=f"ok {summary.succeeded}  rejected {summary.rejected}  "
                                  f"failed {summary.failed}")

        summary = _run_client(run_load(endpoint.url, endpoint.token, plan, limits,
                                       on_progress=show,
                                       stop_signals=(signal.SIGINT, signal.SIGTERM)))
        if not summary.stopped_by:
            progress.update(task, completed=plan.calls or plan.duration_s)  # the run is over
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print("\n".join(summary.lines()))
    if summary.stopped_by:  # the summary, then the exit status of a process stopped by it
        raise typer.Exit(128 + signal.Signals[summary.stopped_by].value)
    if summary.succeeded == 0:
        raise typer.Exit(1)


def load_plan(*, calls: int | None = None, duration: str | None = None,
              concurrency: int | None = None, rate: float | None = None,
              sessions: int | None = None, models: str | None = None,
              stream_share: float | None = None, stream: bool = False,
              continue_share: float = 0.0, retry: bool = True, max_in_flight: int | None = None,
              seed: int = 0) -> LoadPlan:
    """``exai loadgen``'s options as a plan; options that contradict each other are a usage
    error (exit 2) naming them."""
    from .loadgen import LoadPlan, LoadPlanError, parse_duration, parse_models

    try:
        if stream and stream_share not in (None, 1.0):
            raise LoadPlanError("give --stream or --stream-share, not both")
        return LoadPlan(calls=calls,
                        duration_s=None if duration is None else parse_duration(duration),
                        concurrency=concurrency, rate=rate, sessions=sessions,
                        models=(None,) if models is None else parse_models(models),
                        stream_share=1.0 if stream else stream_share or 0.0,
                        continue_share=continue_share, retry=retry, max_in_flight=max_in_flight,
                        seed=seed)
    except LoadPlanError as error:
        raise typer.BadParameter(str(error)) from None


@app.command()
def mcp(
    url: Annotated[str | None, typer.Option(help="Daemon URL (EXAI_WS_URL).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level (logs go to stderr).")] = "INFO",
) -> None:
    """Serve MCP on stdio for editors and agents, forwarding tools to the daemon."""
    from .mcp_bridge import run_bridge

    run_bridge(url=url, log_level=log_level)


def main() -> None:
    app()
