"""What a tool is, what it gets to work with, and how arguments are checked."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ErrorCode, ToolError

Emit = Callable[[str], Awaitable[None]]


@dataclass
class ToolResult:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallContext:
    """One call's identity and its ways to talk back while running."""

    request_id: str
    session_id: str
    trace_id: str
    progress: Emit
    stream_chunk: Emit


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    arguments: ClassVar[type[BaseModel]]

    async def run(self, args: Any, ctx: CallContext) -> ToolResult: ...


def _validation_details(error: ValidationError) -> list[dict[str, str]]:
    """Field paths and reasons, without echoing the (possibly sensitive) input values."""
    return [{"field": ".".join(str(part) for part in item["loc"]) or "(root)", "error": item["msg"]}
            for item in error.errors(include_input=False, include_url=False)]


class ToolRegistry:
    """Looks tools up by name and validates their arguments."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": tool.name, "description": tool.description,
                 "inputSchema": tool.arguments.model_json_schema()}
                for tool in self._tools.values()]

    def prepare(self, name: str, arguments: Mapping[str, Any]) -> tuple[Tool, BaseModel]:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(ErrorCode.TOOL_NOT_FOUND, f"unknown tool {name[:100]!r}",
                            details={"available": self.names()})
        try:
            return tool, tool.arguments.model_validate(dict(arguments))
        except ValidationError as error:
            raise ToolError(ErrorCode.INVALID_ARGUMENTS, f"invalid arguments for {name}",
                            details={"errors": _validation_details(error)}) from None


def json_text(value: Any) -> str:
    """Tool output for structured results: indented JSON a person can read."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
