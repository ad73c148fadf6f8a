"""The test suite's raw HTTP/2 client: :class:`RawH2`, plus a few byte-level helpers.

Tests that need to see what the server does at the frame level (RST_STREAM
codes, GOAWAY frames, SETTINGS, PING ACKs, flow-control windows) use
:class:`RawH2`, a small blocking client built on the ``h2`` library, over a
plain or TLS socket. It never runs in the background: the test drives it with
:meth:`RawH2.pump` or with the ``wait_*`` / :meth:`RawH2.response` helpers,
which read from the socket until a condition holds, so a test can stop at any
point (a full window, a GOAWAY, a half-sent body) and look around.

Typical use::

    with RawH2(server.port) as client:  # RawH2(port, ca_pem=...) for TLS (ALPN h2)
        r = client.get("/hello")  # one request, waited for: a Stream
        assert (r.status, r.body, r.reset) == (200, b"hello", None)

        sid = client.request("POST", "/upload", end_stream=False)
        client.send_body(sid, memoryview(data))  # as much as the server's windows allow
        client.h2.end_stream(sid)
        client.flush()
        stream = client.response(sid)

Every stream opened with :meth:`RawH2.request` gets a :class:`Stream` in
``client.streams``, which records what arrived for it (headers, body, 1xx
blocks, trailers, the order of h2's events) and :meth:`RawH2.send_trailers`
ends a request with a trailer section. With ``auto_ack=False``
received DATA is not acknowledged until the test calls :meth:`RawH2.ack`, so
the test plays a slow reader.

Connection-level facts are attributes: ``goaways`` (:class:`GoAway`, in
order), ``remote_settings`` (the server's SETTINGS, by code),
``pings_acked`` (PING ACK payloads) and ``eof`` (the server closed the
connection). GOAWAY frames are taken out of the byte stream before h2 sees
them: h2 would otherwise refuse the frames of streams still in flight after a
GOAWAY, which is exactly what graceful shutdown tests need to watch.

For tests below HTTP/2 framing (bad prefaces, timeouts) there are
:data:`PREFACE`, :func:`parse_frames` and :func:`read_until_closed`.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY_FRAME = 0x7


# -- byte-level helpers ----------------------------------------------------------------------------


def split_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Split bytes into hyperframe frames; returns the frames and the unparsed tail (a partial frame)."""
    frames: list[Frame] = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames, bytes(view)


def parse_frames(data: bytes) -> list[Frame]:
    """Split a byte string into hyperframe frames (a trailing partial frame is ignored)."""
    return split_frames(data)[0]


def take_goaways(buf: bytes) -> tuple[list[bytes | GoAway], bytes]:
    """Split complete frames into runs of bytes for h2 and parsed GOAWAYs, in order; returns (pieces, tail).

    Test clients keep GOAWAY away from h2: its state machine refuses to send
    anything after one, while the server still finishes streams below the
    GOAWAY's last stream id (RFC 9113 §6.8).
    """
    pieces: list[bytes | GoAway] = []
    passthrough = bytearray()
    pos = 0
    while len(buf) - pos >= 9:
        length = int.from_bytes(buf[pos : pos + 3], "big")
        end = pos + 9 + length
        if end > len(buf):
            break
        if buf[pos + 3] == GOAWAY_FRAME:
            if passthrough:
                pieces.append(bytes(passthrough))
                passthrough.clear()
            payload = buf[pos + 9 : end]
            last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
            pieces.append(GoAway(last, int.from_bytes(payload[4:8], "big"), bytes(payload[8:])))
        else:
            passthrough += buf[pos:end]
        pos = end
    if passthrough:
        pieces.append(bytes(passthrough))
    return pieces, bytes(buf[pos:])


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


# -- what the client records -----------------------------------------------------------------------


@dataclass
class Stream:
    """One request's response as it arrives: headers, body, and how the stream ended."""

    stream_id: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # in order, repeats kept
    data: bytearray = field(default_factory=bytearray)  # the body so far (tests may clear it)
    data_events: int = 0  # DATA frames received, empty ones included
    received: int = 0  # flow-controlled bytes received
    unacked: int = 0  # flow-controlled bytes not yet acknowledged to h2 (auto_ack=False)
    ended: bool = False  # END_STREAM received
    reset: ErrorCodes | int | None = None  # the RST_STREAM error code, if the server reset it
    keep_data: bool = True  # False: count body bytes but do not keep them
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)  # 1xx header blocks, in order
    trailers: list[tuple[bytes, bytes]] | None = None  # the trailer section, if one arrived
    events: list[str] = field(default_factory=list)  # h2 event class names for this stream, in order

    @property
    def status(self) -> int | None:
        """The ``:status`` as an int; None before the response headers arrived."""
        value = self.header(b":status")
        return None if value is None else int(value)

    @property
    def body(self) -> bytes:
        return bytes(self.data)

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int
    debug: bytes


# -- the client ------------------------------------------------------------------------------------


class RawH2:
    """A blocking h2 client connection that shows the test every frame-level fact it needs.

    ``ca_pem``: speak TLS (ALPN h2, checked) trusting that CA, with ``:scheme https``.
    ``auto_ack``: acknowledge received DATA at once (else see :meth:`ack`).
    ``settings``: SETTINGS to send after the preface, by code.
    ``record_frames``: keep (frame type name, flags, stream id) of every frame received in :attr:`frames`.
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        ca_pem: str | None = None,
        auto_ack: bool = True,
        settings: dict[int, int] | None = None,
        timeout: float = 15,
        record_frames: bool = False,
    ) -> None:
        self.port = port
        self.frames: list[tuple[str, set[str], int]] | None = [] if record_frames else None
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca_pem is not None:
            ctx = ssl.create_default_context(cafile=ca_pem)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.scheme = b"https" if ca_pem else b"http"
        self.authority = f"{host}:{port}".encode()
        self.auto_ack = auto_ack
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        # This client handles GOAWAY as RFC 9113 §6.8 says (GOAWAYs never reach h2, see take_goaways).
        # Without HEADER_TABLE_SIZE (it keeps the default) its SETTINGS do not look like the Python h2
        # library's, which h2gate closes more carefully (ConnectionCore._announce_drain).
        del self.h2.local_settings[h2.settings.SettingCodes.HEADER_TABLE_SIZE]
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.goaways: list[GoAway] = []
        self.remote_settings: dict[int, int] = {}
        self.pings_acked: list[bytes] = []
        self.pushes: list[tuple[int, int, list[tuple[bytes, bytes]]]] = []  # (parent, promised, request headers)
        self.eof = False
        self._buf = b""
        self.flush()

    # -- connection ------------------------------------------------------------------------------

    def __enter__(self) -> RawH2:
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
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def local_address(self) -> tuple[str, int]:
        """The client's own (host, port), as the server sees it."""
        host, port = self.sock.getsockname()[:2]
        return host, port

    def flush(self) -> None:
        """Send whatever h2 has queued (nothing once the server has closed)."""
        data = self.h2.data_to_send()
        if data and not self.eof:
            self.sock.sendall(data)

    # -- reading ---------------------------------------------------------------------------------

    def pump(self, timeout: float = 0.5) -> bool:
        """Read once (waiting at most ``timeout``) and process; False on timeout or EOF."""
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
        self._feed(data)
        self.flush()
        return True

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
        """Pump until ``predicate()``; TimeoutError after ``timeout``, ConnectionError on EOF."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            if self.eof:
                raise ConnectionError(f"connection closed while waiting for {what}")
            self.pump(min(left, 0.5))

    def wait_eof(self, timeout: float = 15) -> None:
        """Pump until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if time.monotonic() > deadline:
                raise TimeoutError("server did not close the connection")
            self.pump(0.5)

    def _feed(self, data: bytes) -> None:
        """Hand complete frames to h2, except GOAWAY frames, which are recorded here."""
        pieces, self._buf = take_goaways(self._buf + data)
        for piece in pieces:
            if isinstance(piece, GoAway):
                self.goaways.append(piece)
            else:
                self._process(piece)

    def _process(self, data: bytes) -> None:
        if self.frames is not None:
            self.frames.extend((type(f).__name__, set(f.flags), f.stream_id) for f in parse_frames(data))
        for event in self.h2.receive_data(data):
            sid = getattr(event, "stream_id", None)
            if sid in self.streams:
                self.streams[sid].events.append(type(event).__name__)
            if isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].headers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams[event.stream_id]
                if stream.keep_data:
                    stream.data += event.data
                stream.data_events += 1
                stream.received += event.flow_controlled_length
                if not self.auto_ack:
                    stream.unacked += event.flow_controlled_length
                elif event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.InformationalResponseReceived):
                self.streams[event.stream_id].informational.append(list(event.headers))  # type: ignore[arg-type]
            elif isinstance(event, h2.events.TrailersReceived):
                self.streams[event.stream_id].trailers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id].reset = event.error_code
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.remote_settings[int(code)] = change.new_value
            elif isinstance(event, h2.events.PingAckReceived):
                self.pings_acked.append(event.ping_data)
            elif isinstance(event, h2.events.PushedStreamReceived):
                self.pushes.append((event.parent_stream_id, event.pushed_stream_id, list(event.headers)))  # type: ignore[arg-type]
                self.streams[event.pushed_stream_id] = Stream(event.pushed_stream_id)

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str | bytes,
        *,
        body: bytes = b"",
        end_stream: bool = True,
        headers: Iterable[tuple[bytes, bytes]] = (),
        keep_data: bool = True,
    ) -> int:
        """Open a stream and return its id; ``body`` must fit the server's windows.

        With ``end_stream=False`` the stream stays open for :meth:`send_body` /
        :meth:`send_data`. ``headers`` follow the pseudo-headers as given.
        """
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream(sid, keep_data=keep_data)
        head = [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path if isinstance(path, bytes) else path.encode()),
            *headers,
        ]
        self.h2.send_headers(sid, head, end_stream=end_stream and not body)
        if body:
            assert len(body) <= self.h2.local_flow_control_window(sid)
            frame = self.h2.max_outbound_frame_size
            for i in range(0, len(body), frame):
                last = end_stream and i + frame >= len(body)
                self.h2.send_data(sid, body[i : i + frame], end_stream=last)
        self.flush()
        return sid

    def response(self, sid: int, timeout: float = 15, *, until: Callable[[Stream], bool] | None = None) -> Stream:
        """Pump until stream ``sid`` ends or is reset (or until ``until(stream)``); returns the stream."""
        stream = self.streams[sid]
        check = until or (lambda s: s.done)
        self.wait_for(lambda: check(stream), timeout, f"the response on stream {sid}")
        return stream

    def get(
        self,
        path: str | bytes,
        *,
        method: str = "GET",
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        timeout: float = 15,
    ) -> Stream:
        """One whole request: :meth:`request` and then :meth:`response`."""
        return self.response(self.request(method, path, headers=headers, body=body), timeout)

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """Send one DATA frame (it must fit the window and the frame size)."""
        self.h2.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def send_trailers(self, sid: int, trailers: Iterable[tuple[bytes, bytes]]) -> None:
        """End the request with a trailer section (HEADERS with END_STREAM)."""
        self.h2.send_headers(sid, list(trailers), end_stream=True)
        self.flush()

    def send_body(self, sid: int, data: memoryview) -> int:
        """Send as much of ``data`` as the server's windows allow right now; returns bytes sent."""
        window = self.h2.local_flow_control_window(sid)
        n = min(window, len(data))
        frame = self.h2.max_outbound_frame_size
        for i in range(0, n, frame):
            self.h2.send_data(sid, data[i : min(n, i + frame)])
        if n:
            self.flush()
        return n

    def ack(self, sid: int, size: int | None = None) -> None:
        """Give back receive window for ``size`` (default: all) unacknowledged bytes of ``sid``."""
        stream = self.streams[sid]
        size = stream.unacked if size is None else min(size, stream.unacked)
        if size:
            stream.unacked -= size
            self.h2.acknowledge_received_data(size, sid)
            self.flush()

    def reset(self, sid: int, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM for ``sid``."""
        self.h2.reset_stream(sid, code)
        self.flush()

    def ping(self, data: bytes) -> None:
        """Send a PING; its ACK's payload lands in ``pings_acked``."""
        self.h2.ping(data)
        self.flush()
