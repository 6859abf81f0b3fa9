"""The small tools: ``listmodels``, ``status`` and ``version``."""

from __future__ import annotations

import platform
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from .. import __version__
from ..providers.registry import ProviderRegistry
from .base import CallContext, NoArguments, ToolResult, json_text


class ListModelsTool:
    name: ClassVar[str] = "listmodels"
    description: ClassVar[str] = "List the models of each provider and whether it is configured."
    arguments: ClassVar[type[BaseModel]] = NoArguments

    def __init__(self, providers: ProviderRegistry) -> None:
        self._providers = providers

    async def run(self, args: NoArguments, ctx: CallContext) -> ToolResult:
        models = self._providers.list_models()
        return ToolResult(text=json_text(models), metadata={"providers": models})


class StatusTool:
    name: ClassVar[str] = "status"
    description: ClassVar[str] = (
        "The daemon's health report: components, sessions, in-flight calls.")
    arguments: ClassVar[type[BaseModel]] = NoArguments

    def __init__(self, report: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._report = report

    async def run(self, args: NoArguments, ctx: CallContext) -> ToolResult:
        report = await self._report()
        return ToolResult(text=json_text(report), metadata={"status": report["status"]})


def build_info() -> dict[str, str]:
    return {"name": "exai-daemon", "version": __version__,
            "python": platform.python_version(), "platform": sys.platform}


class VersionTool:
    name: ClassVar[str] = "version"
    description: ClassVar[str] = "The daemon's name, version and build information."
    arguments: ClassVar[type[BaseModel]] = NoArguments

    async def run(self, args: NoArguments, ctx: CallContext) -> ToolResult:
        info = build_info()
        return ToolResult(text=json_text(info), metadata=info)
