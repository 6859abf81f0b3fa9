"""Recording servers on free loopback ports, for tests that receive what a process sends.

It runs the stdlib's threading HTTP server, not the test's event loop: a test that blocks its loop
(starting a process, say) must not stall the senders it is watching.
"""

from __future__ import annotations

import socketserver
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .procs import LOOPBACK


class ServedInThread:
    """A socketserver on loopback, served from a daemon thread: ``start()``, ``stop()``."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self._server = server
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()  # for what subclasses record

    def start(self) -> Any:
        """Serve from a thread; returns the server, for ``Receiver().start()``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LoopbackHTTPServer(ServedInThread):
    """Answers every POST with 200 and what ``on_post`` returns; ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply, content_type = server.on_post(self.path, self.headers, body)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                return

        super().__init__(ThreadingHTTPServer((LOOPBACK, 0), Handler))

    def on_post(self, path: str, headers: Message, body: bytes) -> tuple[bytes, str]:
        """Record one request; the reply's body and content type."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"
