"""A tiny raw HTTP/2 client for tests that need to see frames: h2 for the state, hyperframe for parsing."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def parse_frames(data: bytes) -> list[Frame]:
    """Split a byte string into hyperframe frames (a trailing partial frame is ignored)."""
    frames = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Read until EOF or ``timeout``; returns (bytes, closed_by_peer)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class RawClient:
    """h2 client connection over a blocking socket, with helpers to pump events."""

    def __init__(self, host: str, port: int, *, tls_context: ssl.SSLContext | None = None, **settings: Any) -> None:
        sock = socket.create_connection((host, port), timeout=10)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")]
        self.conn.send_headers(sid, hdrs + (headers or []), end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def events(self, timeout: float = 5.0) -> list[h2.events.Event]:
        """Events from one read (empty list on timeout); raises EOFError when the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        if not data:
            raise EOFError("server closed the connection")
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def response(self, stream_id: int, timeout: float = 10.0) -> tuple[dict[bytes, bytes], bytes, list[Any]]:
        """Collect headers and body of ``stream_id`` until it ends or is reset."""
        headers: dict[bytes, bytes] = {}
        body = bytearray()
        seen: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events(timeout=max(0.05, deadline - time.monotonic())):
                seen.append(ev)
                if getattr(ev, "stream_id", None) != stream_id:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, stream_id)
                    self.flush()
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return headers, bytes(body), seen
        raise TimeoutError(f"stream {stream_id} did not finish")

    def close(self) -> None:
        self.sock.close()
