"""The ``exai`` command line: serve, chat, fake-llm, loadgen, mcp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from otel.redaction import escape_controls

if TYPE_CHECKING:
    from .client_config import DaemonEndpoint

if TYPE_CHECKING:
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
        telemetry = configure_telemetry(__version__)
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
) -> None:
    """A simulated OpenAI-compatible upstream for demos, tests and benchmarks."""
    from .fake_llm import FakeLLMConfig, run_fake_llm

    run_fake_llm(host, port, FakeLLMConfig(latency_ms=latency_ms, error_rate=error_rate,
                                           ttft_ms=ttft_ms))


@app.command()
def loadgen(
    url: Annotated[str | None, typer.Option(help="Daemon URL (EXAI_WS_URL).")] = None,
    calls: Annotated[int, typer.Option(min=1)] = 100,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    model: Annotated[str | None, typer.Option()] = None,
    stream: Annotated[bool, typer.Option()] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Drive chat calls through the daemon and print calls/s, latency percentiles and errors."""
    from .loadgen import run_load

    endpoint = _endpoint(url)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=as_json) as progress:
        task = progress.add_task("chat calls", total=calls)
        summary = _run_client(run_load(endpoint.url, endpoint.token, calls, concurrency, model,
                                       stream, on_done=lambda: progress.advance(task)))
    result = summary.as_dict()
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            console.print(f"{key:>14}: {value}")
    if summary.succeeded == 0:
        raise typer.Exit(1)


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
