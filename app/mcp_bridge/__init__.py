"""``exai mcp``: an MCP server on stdio that forwards tools to the daemon over its WebSocket.

Editors and agents speak MCP over stdio; the daemon speaks its own WebSocket protocol. This
package is the bridge between them, and it keeps one trace from the editor's request, through
the bridge, to the daemon and its LLM call. Modules, each with one job:

- :mod:`.settings`: where the daemon is and how patient to be with it;
- :mod:`.backoff`: reconnect delays with jitter (pure);
- :mod:`.link`: one daemon connection at a time, re-established when the daemon restarts;
- :mod:`.telemetry`: the bridge's service name, tracer and ``mcp.client.*`` metric;
- :mod:`.forward`: one daemon request per MCP request, in a CLIENT span, with deadline and cancel;
- :mod:`.progress`: daemon ``progress``/``stream_chunk`` frames to MCP progress notifications;
- :mod:`.results`: daemon replies to MCP results and errors (pure);
- :mod:`.server`: the MCP server (SDK lowlevel ``Server``) and the stdio entry point.
"""

from .server import run_bridge

__all__ = ["run_bridge"]
