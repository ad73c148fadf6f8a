"""A loopback TCP relay between a gRPC client and the server: cut it to lose the connection mid-stream.

It also reads the client's HTTP/2 frames as they pass (cleartext h2c only) and
counts them by type, so a test can see the client's keepalive PINGs arrive.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING = 0x6


class Relay:
    """Listens on 127.0.0.1:<free port> and relays each connection to ``127.0.0.1:upstream``."""

    def __init__(self, upstream: int, *, count_frames: bool = False) -> None:
        self.upstream = upstream
        self.count_frames = count_frames
        self.frames: Counter[int] = Counter()  # client → server frames by type (h2c only)
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self.count_frames), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, parse: bool) -> None:
        pending = b""
        seen_preface = False
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if parse:
                    pending += data
                    if not seen_preface and len(pending) >= len(PREFACE):
                        pending, seen_preface = pending[len(PREFACE) :], True
                    while seen_preface and len(pending) >= 9:
                        length = int.from_bytes(pending[:3], "big")
                        if len(pending) < 9 + length:
                            break
                        with self._lock:
                            self.frames[pending[3]] += 1
                        pending = pending[9 + length :]
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def sever(self) -> None:
        """Cut every relayed connection at once (both directions), as a lost network would."""
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._listener.close()
        self.sever()
