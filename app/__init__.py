"""The EX-AI daemon: a WebSocket gateway exposing MCP-style tools backed by Kimi and GLM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("exai-daemon")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
