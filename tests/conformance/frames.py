"""A small frame toolkit for the conformance suite: well-formed frames, broken bytes and a raw peer.

Well-formed frames are built with ``hyperframe`` and header blocks with
``hpack.Encoder``; deliberately broken frames (bad lengths, bad padding,
reserved stream ids) are written byte by byte with :func:`raw_frame`, because
hyperframe refuses to serialize most of them.

:class:`Peer` is a blocking-socket client that speaks no more HTTP/2 than a
test asks for: it connects over h2c prior knowledge, h2c Upgrade or TLS with
ALPN h2, performs the preface and SETTINGS exchange, then sends exactly the
frames or bytes it is given and reports what the server answered.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import time
from collections.abc import Iterable

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.h2raw import split_frames

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TRANSPORTS = ("h2c", "upgrade", "tls")

# Frame types (RFC 9113 §6) and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes (RFC 9113 §7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

# Settings (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = (
    range(1, 7)
)

Headers = list[tuple[bytes | str, bytes | str]]


def request_headers(path: str = "/hello", method: str = "GET", extra: Headers | None = None) -> Headers:
    """A valid request's header list (pseudo-headers first), plus ``extra`` regular fields."""
    return [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path), *(extra or [])]


def raw_frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """Frame bytes written by hand; ``length`` overrides the header's length field (to lie about it)."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def settings_payload(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)


def headers_frame(
    stream_id: int, block: bytes, *, end_stream: bool = True, end_headers: bool = True, flags: int = 0
) -> bytes:
    """A HEADERS frame carrying an already encoded (or deliberately broken) header block."""
    flags |= (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return raw_frame(HEADERS, flags, stream_id, block)


def data_frame(stream_id: int, data: bytes = b"", *, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, data)
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def continuation_frame(stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
    frame = ContinuationFrame(stream_id, block)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def rst_frame(stream_id: int, code: int = CANCEL) -> bytes:
    return RstStreamFrame(stream_id, error_code=code).serialize()


def window_update(stream_id: int, increment: int) -> bytes:
    return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def priority_payload(depends_on: int, weight: int = 15, exclusive: bool = False) -> bytes:
    return struct.pack(">IB", depends_on | (0x80000000 if exclusive else 0), weight)


def describe(frames: Iterable[Frame]) -> str:
    return ", ".join(f"{type(f).__name__}(sid={f.stream_id}, code={getattr(f, 'error_code', '-')})" for f in frames)


class PeerClosed(Exception):
    """The server closed the connection."""


class Peer:
    """One raw HTTP/2 client connection to the server under test.

    ``transport`` is ``h2c`` (prior knowledge), ``upgrade`` (HTTP/1.1 Upgrade:
    h2c; stream 1 is the upgraded request, already answered when the
    constructor returns) or ``tls`` (ALPN h2, trusting ``cafile``).
    ``settings`` are sent in the client's first SETTINGS frame. ``rcvbuf``
    shrinks the socket's receive buffer (set before connecting), so a test
    that stops reading fills the path back to the server quickly.
    """

    def __init__(
        self,
        transport: str,
        port: int,
        *,
        cafile: str | None = None,
        settings: dict[int, int] | None = None,
        handshake: bool = True,
        rcvbuf: int | None = None,
    ) -> None:
        self.transport = transport
        self.encoder = Encoder()
        self.decoder = Decoder()
        self._queue: list[Frame] = []  # received, not yet consumed by next_frame()
        self.frames: list[Frame] = []  # every frame received, in order
        self.closed = False
        self._buffer = b""
        self._next_stream_id = 1
        self.server_settings: dict[int, int] = {}
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        if transport == "tls":
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.settings = settings or {}
        if transport == "upgrade":
            self._upgrade()
        if handshake:
            self.handshake()

    # -- connection start -----------------------------------------------------------

    def _upgrade(self) -> None:
        payload = settings_payload(*self.settings.items())
        token = base64.urlsafe_b64encode(payload).rstrip(b"=")
        self.sock.sendall(
            b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + token + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PeerClosed("closed during the h2c upgrade")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        self._buffer = rest
        self._next_stream_id = 3

    def handshake(self) -> None:
        """Send the preface and our SETTINGS; wait for the server's SETTINGS and ACK them.

        Over Upgrade, also wait for the complete response on stream 1.
        """
        self.send(PREFACE + raw_frame(SETTINGS, 0, 0, settings_payload(*self.settings.items())))
        first = self.next_frame()
        assert isinstance(first, SettingsFrame) and "ACK" not in first.flags, describe([first])
        self.server_settings = dict(first.settings)
        self.send(raw_frame(SETTINGS, ACK, 0))
        acked, answered = False, self.transport != "upgrade"
        while not (acked and answered):
            frame = self.next_frame()
            acked = acked or (isinstance(frame, SettingsFrame) and "ACK" in frame.flags)
            answered = answered or (frame.stream_id == 1 and "END_STREAM" in frame.flags)
            assert not isinstance(frame, GoAwayFrame | RstStreamFrame), describe([frame])

    # -- sending --------------------------------------------------------------------

    def new_stream_id(self) -> int:
        sid = self._next_stream_id
        self._next_stream_id += 2
        return sid

    def send(self, *items: Frame | bytes) -> None:
        data = b"".join(item if isinstance(item, bytes) else item.serialize() for item in items)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.closed = True

    def send_for(self, data: bytes, timeout: float) -> bool:
        """Send ``data`` unless the server stops taking it for ``timeout`` s; True if all of it went."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            return False
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.closed = True
            return False
        return True

    def block(self, headers: Headers) -> bytes:
        """HPACK-encode ``headers`` with this connection's encoder."""
        return self.encoder.encode(headers)

    def request(self, path: str = "/hello", *, end_stream: bool = True, extra: Headers | None = None) -> int:
        """Open a new stream with a valid request; returns its id."""
        sid = self.new_stream_id()
        self.send(headers_frame(sid, self.block(request_headers(path, extra=extra)), end_stream=end_stream))
        return sid

    def ping(self, opaque: bytes = b"roundtrp") -> None:
        """Send a PING and wait for its ACK: proof the server processed everything sent before."""
        self.send(PingFrame(0, opaque_data=opaque))
        self.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == opaque)

    # -- receiving ------------------------------------------------------------------

    def _fill(self, timeout: float) -> bool:
        """Read once (up to ``timeout``); False if nothing arrived in time."""
        if self.closed:
            raise PeerClosed("connection closed by the server")
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise PeerClosed("connection closed by the server")
        self._buffer += chunk
        return True

    def _pending(self) -> list[Frame]:
        frames, self._buffer = split_frames(self._buffer)
        for frame in frames:
            if isinstance(frame, HeadersFrame):  # decode in arrival order to keep the HPACK table in step
                frame.decoded = dict(self.decoder.decode(frame.data, raw=True))  # type: ignore[attr-defined]
        self.frames.extend(frames)
        return frames

    def read_frames(self, timeout: float = 0.5) -> list[Frame]:
        """Every frame not yet consumed plus those arriving within ``timeout`` s (stops early on close)."""
        got, self._queue = self._queue + self._pending(), []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self._fill(left):
                    got += self._pending()
            except PeerClosed:
                break
        return got

    def next_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self._queue:
            self._queue += self._pending()
            if self._queue:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError(f"no frame from the server within {timeout}s; got: {describe(self.frames)}")
        return self._queue.pop(0)

    def wait_for(self, match, timeout: float = 5.0) -> Frame:  # type: ignore[no-untyped-def]
        """The next received frame for which ``match(frame)`` is true (skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next_frame(max(0.01, deadline - time.monotonic()))
            if match(frame):
                return frame

    def expect_goaway(self, code: int, timeout: float = 5.0) -> GoAwayFrame:
        """Wait for the final GOAWAY, with ``code``, then for the server to close the connection.

        A graceful close announces itself first with GOAWAY(2^31-1, NO_ERROR) and a PING
        (RFC 9113 §6.8); that one is skipped: the final one names the last stream served.
        """

        def final(f: Frame) -> bool:
            return isinstance(f, GoAwayFrame) and (f.last_stream_id != 2**31 - 1 or f.error_code != NO_ERROR)

        try:
            frame = self.wait_for(final, timeout)
        except PeerClosed:
            raise AssertionError(f"closed without GOAWAY; frames: {describe(self.frames)}") from None
        assert frame.error_code == code, f"GOAWAY {frame.error_code} != {code}: {frame.additional_data!r}"
        self.expect_closed(timeout)
        return frame  # type: ignore[return-value]

    def expect_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            assert left > 0, "the server did not close the connection"
            try:
                self._fill(left)
            except PeerClosed:
                return

    def expect_rst(self, stream_id: int, code: int, timeout: float = 5.0) -> RstStreamFrame:
        """Wait for RST_STREAM on ``stream_id`` with ``code``; fails on a GOAWAY or a close."""

        def match(f: Frame) -> bool:
            if isinstance(f, GoAwayFrame):
                raise AssertionError(f"GOAWAY {f.error_code} ({f.additional_data!r}) instead of RST_STREAM")
            return isinstance(f, RstStreamFrame) and f.stream_id == stream_id

        try:
            frame = self.wait_for(match, timeout)
        except PeerClosed:
            raise AssertionError(f"closed instead of RST_STREAM; frames: {describe(self.frames)}") from None
        assert frame.error_code == code, f"RST_STREAM {frame.error_code} != {code}"
        return frame  # type: ignore[return-value]

    def expect_stream_error(self, stream_id: int, code: int, timeout: float = 5.0) -> bool:
        """RST_STREAM on ``stream_id`` or GOAWAY, with ``code``; True if it was the GOAWAY.

        For the rules where RFC 9113 asks for a stream error: §5.4.1 lets an endpoint treat any
        stream error as a connection error, and libnghttp2 (``--codec ngh2``) does for some.
        """
        frame = self.wait_for(lambda f: isinstance(f, GoAwayFrame) or (
            isinstance(f, RstStreamFrame) and f.stream_id == stream_id
        ), timeout)  # fmt: skip
        assert frame.error_code == code, f"{type(frame).__name__} {frame.error_code} != {code}"  # type: ignore[attr-defined]
        return isinstance(frame, GoAwayFrame)

    def expect_response(self, stream_id: int, timeout: float = 5.0) -> tuple[dict[bytes, bytes], bytes]:
        """Collect the response on ``stream_id`` up to END_STREAM: (headers, body)."""
        headers: dict[bytes, bytes] = {}
        body = b""
        while True:
            frame = self.wait_for(lambda f: f.stream_id in (0, stream_id), timeout)
            if isinstance(frame, GoAwayFrame):
                raise AssertionError(f"GOAWAY {frame.error_code} ({frame.additional_data!r}) instead of a response")
            if isinstance(frame, RstStreamFrame):
                raise AssertionError(f"RST_STREAM {frame.error_code} instead of a response")
            if isinstance(frame, HeadersFrame):
                headers.update(frame.decoded)  # type: ignore[attr-defined]
            elif isinstance(frame, DataFrame):
                body += frame.data
            if frame.stream_id == stream_id and "END_STREAM" in frame.flags:
                return headers, body

    def expect_alive(self) -> None:
        """The connection still works: a PING round trip succeeds and no GOAWAY came."""
        self.ping(b"stillup!")
        bad = [f for f in self.frames if isinstance(f, GoAwayFrame)]
        assert not bad, describe(bad)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
