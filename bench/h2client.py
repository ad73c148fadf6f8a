"""A small blocking HTTP/2 client on the h2 library, for the soak's misbehaving clients (bench/soak_traffic.py).

The soak needs what httpx and h2load hide: a stream reset mid-response, a
receive window of 0, an upload that stops, a socket nobody reads. This client
holds one TLS connection (ALPN h2) and never reads in the background: the
caller reads with :meth:`H2Client.pump` and looks at :attr:`H2Client.streams`
in between, so a round can stop anywhere and judge what the server did.

It covers only what the soak uses. The test suite has its own, fuller raw
client (tests/h2raw.py); bench/ stays independent of the test suite's code,
and neither needs the other's extras.

GOAWAY frames are counted and kept away from h2: after one, h2 refuses every
frame, while a server may still finish the streams below the GOAWAY's last
stream id (RFC 9113 §6.8).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes

GOAWAY_FRAME = 0x7
FRAME_HEADER = 9


@dataclass
class Stream:
    """One request's response as it arrives, and how the stream ended."""

    stream_id: int
    keep_data: bool = True  # False: count the body's bytes without keeping them
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    received: int = 0  # flow-controlled bytes received
    ended: bool = False  # END_STREAM received
    reset: ErrorCodes | int | None = None  # the server's RST_STREAM error code

    @property
    def status(self) -> int | None:
        """The ``:status`` as an int; None before the response headers arrived."""
        value = next((v for k, v in self.headers if k == b":status"), None)
        return None if value is None else int(value)

    @property
    def body(self) -> bytes:
        return bytes(self.data)

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """One HTTP/2 connection over TLS trusting ``ca_pem``; ``settings``: SETTINGS to send after the preface.

    Received DATA is acknowledged at once. :attr:`eof` turns true when the
    server closes the connection; :attr:`h2` and :attr:`sock` are there for
    rounds that go below requests (a connection window, a socket left unread).
    """

    def __init__(
        self,
        port: int,
        *,
        ca_pem: str,
        host: str = "127.0.0.1",
        settings: dict[int, int] | None = None,
        timeout: float = 15,
    ) -> None:
        tls = ssl.create_default_context(cafile=ca_pem)
        tls.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost")
        if self.sock.selected_alpn_protocol() != "h2":
            self.sock.close()
            raise ConnectionError(f"ALPN negotiated {self.sock.selected_alpn_protocol()!r}, not h2")
        self.authority = f"{host}:{port}".encode()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        # With HEADER_TABLE_SIZE in its SETTINGS this client would look like the Python h2 library
        # (httpx), which h2gate closes with extra care at shutdown; the soak wants a plain raw client.
        del self.h2.local_settings[h2.settings.SettingCodes.HEADER_TABLE_SIZE]
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.goaways = 0
        self.eof = False
        self._partial = b""  # the start of a frame whose end has not arrived
        self.flush()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Send GOAWAY (unless the server already closed), then close the socket."""
        try:
            if not self.eof:
                self.h2.close_connection()
                self.flush()
        except OSError:
            pass
        self.sock.close()

    def flush(self) -> None:
        """Send what h2 has queued (nothing once the server has closed)."""
        data = self.h2.data_to_send()
        if data and not self.eof:
            self.sock.sendall(data)

    # -- reading

    def pump(self, timeout: float = 0.5) -> bool:
        """Read once, waiting at most ``timeout``, and process it; False on timeout or EOF."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except (TimeoutError, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        frames = self._drop_goaways(data)
        if frames:
            self._handle(self.h2.receive_data(frames))
        self.flush()
        return True

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Pump until ``ready()``; TimeoutError after ``timeout``, ConnectionError if the server closes first."""
        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            if self.eof:
                raise ConnectionError(f"connection closed while waiting for {what}")
            self.pump(min(left, 0.5))

    def _drop_goaways(self, data: bytes) -> bytes:
        """The complete frames in what has arrived, GOAWAY frames counted and left out."""
        buf = self._partial + data
        kept = bytearray()
        pos = 0
        while len(buf) - pos >= FRAME_HEADER:
            end = pos + FRAME_HEADER + int.from_bytes(buf[pos : pos + 3], "big")
            if end > len(buf):
                break
            if buf[pos + 3] == GOAWAY_FRAME:
                self.goaways += 1
            else:
                kept += buf[pos:end]
            pos = end
        self._partial = buf[pos:]
        return bytes(kept)

    def _handle(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].headers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams[event.stream_id]
                if stream.keep_data:
                    stream.data += event.data
                stream.received += event.flow_controlled_length
                if event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id in self.streams:
                self.streams[event.stream_id].reset = event.error_code

    # -- requests

    def request(self, method: str, path: str, *, end_stream: bool = True, keep_data: bool = True) -> int:
        """Open a stream (no body; ``end_stream=False`` leaves it open for :meth:`send_data`); return its id."""
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream(sid, keep_data=keep_data)
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path.encode()),
        ]
        self.h2.send_headers(sid, head, end_stream=end_stream)
        self.flush()
        return sid

    def get(self, path: str, *, timeout: float = 15) -> Stream:
        """One GET, waited for until its stream ends or is reset."""
        stream = self.streams[self.request("GET", path)]
        self.wait_for(lambda: stream.done, timeout, f"the response to GET {path}")
        return stream

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """Send one DATA frame (it must fit the window and the frame size)."""
        self.h2.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def reset(self, sid: int, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM for ``sid``."""
        self.h2.reset_stream(sid, code)
        self.flush()
