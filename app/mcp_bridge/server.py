"""The MCP server on stdio (the official SDK's lowlevel ``Server``) and ``exai mcp``'s entry point.

``tools/list`` and ``tools/call`` are forwarded to the daemon; the daemon stays the one place
that knows the tools, validates arguments and enforces timeouts. The SDK wraps every inbound MCP
request in a SERVER span joined to ``params._meta.traceparent``; :mod:`.forward` hangs the CLIENT
span to the daemon under it. stdout carries only protocol messages: the SDK's stdio transport
owns it while serving, and every log line goes to stderr (or OTLP).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from app import __version__

from . import results
from .forward import Forwarder
from .link import DaemonLink
from .progress import ProgressRelay
from .settings import BridgeSettings
from .telemetry import SERVICE_NAME, BridgeInstruments, start_telemetry

log = logging.getLogger(__name__)

INSTRUCTIONS = ("Tools of the EX-AI daemon: `chat` asks Kimi or GLM (pass `continuation_id` "
                "from a previous answer's structured content to continue a conversation); "
                "`listmodels`, `status` and `version` describe the daemon.")


def build_server(forwarder: Forwarder, forward_stream_chunks: bool) -> Server[Any]:
    """The MCP server: each request is one daemon request, progress relayed as it comes."""

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await forwarder.list_tools(ctx.meta))

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        relay = ProgressRelay(ctx.session.report_progress, forward_stream_chunks)
        relay.start()
        try:
            reply = await forwarder.call_tool(params.name, dict(params.arguments or {}),
                                              ctx.meta, relay.push)
        except BaseException:
            relay.abandon()
            raise
        await relay.finish()
        return results.call_result(params.name, reply)

    return Server(SERVICE_NAME, version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


# How long a SIGTERM waits for calls in flight to be cancelled in the daemon before exiting.
SHUTDOWN_GRACE_SECS = 3.0


async def serve_stdio(settings: BridgeSettings, instruments: BridgeInstruments,
                      exit_now: Callable[[], None]) -> None:
    """Serve MCP on stdio until stdin closes or SIGTERM/SIGINT, holding one daemon link.

    stdin closing is the normal end. A signal cancels the calls in flight (each tells the daemon
    to cancel), then calls ``exit_now``: the SDK reads stdin in a thread that no cancellation can
    interrupt, so the process cannot wait for it to end on its own.
    """
    link = DaemonLink(settings)
    link.start()
    server = build_server(Forwarder(link, instruments, settings.options.deadline_margin_secs),
                          settings.options.forward_stream_chunks)
    serving = anyio.CancelScope()
    server_done = anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, serving, server_done, link, exit_now)
            with serving:
                async with stdio_server() as (read_stream, write_stream):
                    try:
                        await server.run(read_stream, write_stream,
                                         server.create_initialization_options())
                    finally:
                        server_done.set()
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await link.close()


async def _stop_on_signal(serving: anyio.CancelScope, server_done: anyio.Event, link: DaemonLink,
                          exit_now: Callable[[], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; cancelling calls in flight and stopping",
                     signal.Signals(signum).name)
            serving.cancel()
            with anyio.move_on_after(SHUTDOWN_GRACE_SECS):
                await server_done.wait()
            await link.close()
            exit_now()


def run_bridge(url: str | None = None, log_level: str = "INFO") -> None:
    """``exai mcp``: configure telemetry and stderr logging, serve, flush telemetry on the way
    out."""
    telemetry, instruments = start_telemetry(__version__, log_level)
    settings = BridgeSettings.from_env(url)
    log.info("exai mcp bridge %s forwarding to %s", __version__, settings.url)

    def exit_now() -> None:
        telemetry.shutdown()
        logging.shutdown()
        os._exit(0)

    try:
        anyio.run(serve_stdio, settings, instruments, exit_now)
    finally:
        telemetry.shutdown()
