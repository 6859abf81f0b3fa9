"""An OTLP endpoint that accepts connections and never answers: a collector that hangs.

A collector that is down refuses connections and costs the exporters nothing; one that is wedged
(stuck on a full disk queue, a half-dead proxy in front of it) accepts and reads but never replies,
so every export waits its whole timeout. That is the case a shutdown deadline has to survive.

``speak_http2=False`` stays silent from the first byte: an http/protobuf request never gets a
status line, and a gRPC client never gets the server's HTTP/2 preface (SETTINGS). With
``speak_http2=True`` it says just enough HTTP/2 to look alive (its SETTINGS, and an ACK of the
client's), so the gRPC channel is READY and the Export call itself is what never returns.
"""

from __future__ import annotations

import socket
import threading

from .procs import LOOPBACK

HTTP2_CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"      # empty SETTINGS frame on stream 0
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # the same with the ACK flag


class HangingEndpoint:
    """A loopback TCP server that reads whatever it is sent and answers nothing."""

    def __init__(self, speak_http2: bool = False) -> None:
        self._speak_http2 = speak_http2
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self.bytes_received = 0

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._clients)

    def start(self) -> HangingEndpoint:
        threading.Thread(target=self._accept, name="hanging-otlp", daemon=True).start()
        return self

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for client in self._clients:
                client.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._clients.append(client)
            threading.Thread(target=self._read_forever, args=(client,), daemon=True).start()

    def _read_forever(self, client: socket.socket) -> None:
        acknowledged = False
        seen = 0
        try:
            if self._speak_http2:
                client.sendall(SETTINGS)
            while chunk := client.recv(65536):
                seen += len(chunk)
                with self._lock:
                    self.bytes_received += len(chunk)
                if self._speak_http2 and not acknowledged and \
                        seen >= len(HTTP2_CLIENT_PREFACE) + FRAME_HEADER_BYTES:
                    client.sendall(SETTINGS_ACK)  # the client's SETTINGS follow its preface
                    acknowledged = True
        except OSError:
            pass
