"""Blocking WebSocket clients for the tests: over HTTP/2 (RFC 8441) and over HTTP/1.1 (RFC 6455).

:class:`H2WebSocket` opens a connection with the ``h2`` library, sends an
extended CONNECT and then speaks ``wsproto`` frames in the stream's DATA.
:class:`H1WebSocket` is ``wsproto``'s own HTTP/1.1 client over a plain or TLS
(ALPN ``http/1.1``) socket. Both expose ``send(event)``, ``next_event()``
(the next wsproto event, reading as needed) and the handshake's outcome.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    Event,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import client_extensions_handshake

from tests.h2raw import take_goaways


def _whole(next_piece: Callable[[float], Event | None], timeout: float) -> Event | None:
    """Join a fragmented message's pieces into one event."""
    deadline = time.monotonic() + timeout
    event = next_piece(deadline)
    if not isinstance(event, (TextMessage, BytesMessage)) or event.message_finished:
        return event
    parts = [event.data]
    while True:
        piece = next_piece(deadline)
        if not isinstance(piece, (TextMessage, BytesMessage)):
            raise AssertionError(f"message interrupted by {piece!r}")
        parts.append(piece.data)
        if piece.message_finished:
            break
    if isinstance(event, TextMessage):
        return TextMessage(data="".join(parts))  # type: ignore[arg-type]
    return BytesMessage(data=b"".join(parts))  # type: ignore[arg-type]


def _connect(port: int, ca_pem: str | None, alpn: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if ca_pem is None:
        return sock
    ctx = ssl.create_default_context(cafile=ca_pem)
    ctx.set_alpn_protocols([alpn])
    return ctx.wrap_socket(sock, server_hostname="localhost")


class H2WebSocket:
    """One WebSocket on stream 1 of a fresh HTTP/2 connection."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        ca_pem: str | None = None,
        protocols: tuple[str, ...] = (),
        deflate: bool = False,
        window: int | None = None,
        protocol: str = "websocket",
    ) -> None:
        self.sock = _connect(port, ca_pem, "h2")
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._pending = b""  # an incomplete frame carried to the next read
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.h2.initiate_connection()
        self.flush()
        self.remote_settings: dict[int, int] = {}
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.ended = False
        self.reset_code: int | None = None
        self.eof = False
        self.sent_end = False
        self._events: deque[Event] = deque()
        self.ws: Connection | None = None
        while h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL not in self.remote_settings:
            self.pump()
        self.sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", protocol.encode()),
            (b":scheme", b"https" if ca_pem else b"http"),
            (b":path", path.encode()),
            (b":authority", f"localhost:{port}".encode()),
            (b"sec-websocket-version", b"13"),
        ]
        if protocols:
            headers.append((b"sec-websocket-protocol", ", ".join(protocols).encode()))
        self.deflate = PerMessageDeflate() if deflate else None
        if self.deflate is not None:
            offer = self.deflate.offer()
            headers.append((b"sec-websocket-extensions", f"permessage-deflate; {offer}".rstrip("; ").encode()))
        self.h2.send_headers(self.sid, headers)
        self.flush()
        while self.status is None and self.reset_code is None and not self.eof:
            self.pump()
        if self.status == 200:
            extensions: list[Any] = []
            accepted = self.headers.get(b"sec-websocket-extensions")
            if accepted and self.deflate is not None:
                extensions = client_extensions_handshake([accepted.decode()], [self.deflate])
            self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
            if self.body:  # frames that came in the same read as the response headers
                self.ws.receive_data(self.body)
                self._events.extend(self.ws.events())
                self.body = b""

    @property
    def enable_connect_protocol(self) -> int:
        return self.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float = 10) -> None:
        """Read once from the socket and handle what arrived."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(256 * 1024)
        if not data:
            self.eof = True
            return
        pieces, self._pending = take_goaways(self._pending + data)
        frames = b"".join(p for p in pieces if isinstance(p, bytes))
        for event in self.h2.receive_data(frames):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.remote_settings.update({k: v.new_value for k, v in event.changed_settings.items()})
            elif isinstance(event, h2.events.ResponseReceived):
                self.status = int(dict(event.headers)[b":status"])
                self.headers = {k: v for k, v in event.headers}
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if self.ws is not None:
                    if not event.data or self.ws.state is ConnectionState.CLOSED:
                        continue
                    self.ws.receive_data(event.data)
                    self._events.extend(self.ws.events())
                    self._end_if_closed()
                else:
                    self.body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.reset_code = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.eof = True
        self.flush()

    def read_response(self, timeout: float = 10) -> bytes:
        """The body of a non-200 answer (a denial), up to END_STREAM."""
        deadline = time.monotonic() + timeout
        while not self.ended and self.reset_code is None and not self.eof and time.monotonic() < deadline:
            self.pump()
        return self.body

    def send(self, event: Event) -> None:
        """Send one event; once both close frames have passed, end our side of the stream (RFC 8441 §5)."""
        assert self.ws is not None
        self.send_raw(self.ws.send(event))
        self._end_if_closed()

    def _end_if_closed(self) -> None:
        if self.ws is not None and self.ws.state is ConnectionState.CLOSED and not self.sent_end:
            self.sent_end = True
            if not self.ended and self.reset_code is None:
                self.h2.end_stream(self.sid)
                self.flush()

    def send_raw(self, data: bytes) -> None:
        """Send stream DATA, waiting for the server's windows (it opens them as its app receives)."""
        view = memoryview(data)
        while view:
            window = min(self.h2.local_flow_control_window(self.sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.pump()
                continue
            self.h2.send_data(self.sid, view[:window].tobytes())
            view = view[window:]
            self.flush()

    def next_event(self, timeout: float = 10) -> Event | None:
        """The next WebSocket event (messages whole); None when the stream ended or was reset first."""
        return _whole(self._next_piece, timeout)

    def _next_piece(self, deadline: float) -> Event | None:
        while not self._events:
            if self.ended or self.reset_code is not None or self.eof:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError("no WebSocket event")
            self.pump(max(0.1, deadline - time.monotonic()))
        return self._events.popleft()

    def wait_end(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not (self.ended or self.reset_code is not None or self.eof):
            if time.monotonic() > deadline:
                raise TimeoutError("stream did not end")
            self.pump(max(0.1, deadline - time.monotonic()))

    def reset(self, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        self.h2.reset_stream(self.sid, code)
        self.flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class H1WebSocket:
    """wsproto's HTTP/1.1 client handshake and framing over a plain or TLS (ALPN http/1.1) socket."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        ca_pem: str | None = None,
        protocols: tuple[str, ...] = (),
        deflate: bool = False,
    ) -> None:
        self.sock = _connect(port, ca_pem, "http/1.1")
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[Event] = deque()
        self.accepted: AcceptConnection | None = None
        self.rejected: RejectConnection | None = None
        self.body = b""
        self.eof = False
        request = Request(
            host=f"localhost:{port}",
            target=path,
            subprotocols=list(protocols),
            extensions=[PerMessageDeflate()] if deflate else [],
        )
        self.sock.sendall(self.ws.send(request))
        while self.accepted is None and self.rejected is None and not self.eof:
            self._pump()

    @property
    def alpn(self) -> str | None:
        return self.sock.selected_alpn_protocol() if isinstance(self.sock, ssl.SSLSocket) else None

    def _pump(self, timeout: float = 10) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = event
            elif isinstance(event, RejectData):
                self.body += event.data
                if event.body_finished:
                    self.eof = True
            else:
                self._events.append(event)

    def read_response(self, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._pump()
        return self.body

    def send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def next_event(self, timeout: float = 10) -> Event | None:
        """The next WebSocket event (messages whole); None once the connection is closed."""
        return _whole(self._next_piece, timeout)

    def _next_piece(self, deadline: float) -> Event | None:
        while not self._events:
            if self.eof:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError("no WebSocket event")
            self._pump(max(0.1, deadline - time.monotonic()))
        return self._events.popleft()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H1WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
