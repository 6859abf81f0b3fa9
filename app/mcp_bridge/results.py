"""Daemon replies as MCP results and errors. Pure, no I/O.

Following the MCP spec: a request the server cannot serve at all (an unknown tool, a malformed
request) is a JSON-RPC error; a tool that ran and failed (bad arguments the model can fix, a
provider error, a timeout, capacity) is a ``CallToolResult`` with ``isError`` so the model sees
why. Every result carries the daemon's ``trace_id`` in ``_meta`` so a slow or failed answer can be
looked up in the trace backend from the editor's side.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from app.errors import JSONRPC_INVALID_PARAMS, PROTOCOL_ERRORS, BridgeErrorCode, ErrorCode
from app.protocol import CallReply

TRACE_ID_META_KEY = "exai/trace_id"
REQUEST_ID_META_KEY = "exai/request_id"
assert types.INVALID_PARAMS == JSONRPC_INVALID_PARAMS


def tools_from(listing: list[dict[str, Any]]) -> list[types.Tool]:
    return [types.Tool(name=tool["name"], description=tool.get("description"),
                       input_schema=tool.get("inputSchema") or {"type": "object"})
            for tool in listing]


def error_type_of(reply: CallReply) -> str | None:
    """The low-cardinality ``error.type`` for a reply, or None when it succeeded."""
    return None if reply.error is None else reply.error.code


def call_result(name: str, reply: CallReply) -> types.CallToolResult:
    """The MCP result for a daemon reply; raises ``MCPError`` when the request itself was wrong."""
    meta = {TRACE_ID_META_KEY: reply.trace_id, REQUEST_ID_META_KEY: reply.request_id}
    meta = {key: value for key, value in meta.items() if value}
    if reply.error is None:
        content = [types.TextContent(type="text", text=text) for text in reply.texts]
        return types.CallToolResult(content=content, _meta=meta or None,
                                    structured_content=reply.metadata or None)
    code, message, details = reply.error.code, reply.error.message, reply.error.details
    data = {"code": code, **({"details": details} if details else {}), **meta}
    if code == ErrorCode.TOOL_NOT_FOUND:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name!r}", data)
    if code in PROTOCOL_ERRORS or reply.op != "call_tool_res":
        raise MCPError(types.INVALID_PARAMS, f"{code}: {message}", data)
    text = f"{code}: {message}"
    if details:
        text += f"\ndetails: {json.dumps(details, sort_keys=True, default=str)}"
    if reply.trace_id:
        text += f"\ntrace_id: {reply.trace_id}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                is_error=True, _meta=meta or None)


def bridge_error(code: BridgeErrorCode | str, message: str, **data: Any) -> MCPError:
    """A JSON-RPC internal error for failures between the bridge and the daemon."""
    return MCPError(types.INTERNAL_ERROR, message,
                    {"code": str(code), **{k: v for k, v in data.items() if v is not None}})
