"""Flow control end to end: a raw h2 client against the real server, with the app reporting what it saw.

Also home of :class:`RawH2`, the small blocking HTTP/2 client the protocol-loop
tests share (h2 as a client over a plain or TLS socket, GOAWAY frames recorded
by the client itself so that streams still in flight after a GOAWAY keep working).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from tests.apps.flow import random_chunks

MB = 1024 * 1024
LOOPS = ["trio", "asyncio"]
GOAWAY = 0x7


@dataclass
class Stream:
    stream_id: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    received: int = 0  # flow-controlled bytes received
    unacked: int = 0  # flow-controlled bytes not yet acknowledged to h2
    ended: bool = False
    reset: int | None = None
    keep_data: bool = True

    @property
    def status(self) -> int:
        return int(self.headers.get(b":status", b"0"))

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int
    debug: bytes


class RawH2:
    """A blocking h2 client on 127.0.0.1 that shows the test every frame-level fact it needs.

    GOAWAY frames are taken out of the byte stream before h2 sees them (h2 would
    refuse the frames of streams still in flight after one) and kept in ``goaways``.
    """

    def __init__(
        self,
        port: int,
        *,
        ca_pem: str | None = None,
        auto_ack: bool = True,
        settings: dict[int, int] | None = None,
        timeout: float = 15,
    ) -> None:
        self.port = port
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca_pem is not None:
            ctx = ssl.create_default_context(cafile=ca_pem)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.scheme = b"https" if ca_pem else b"http"
        self.auto_ack = auto_ack
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.goaways: list[GoAway] = []
        self.remote_settings: dict[int, int] = {}
        self.connection_window_updates: list[int] = []
        self.frames_before_first_headers: list[str] = []  # event kinds seen before any response
        self.pings_acked: list[bytes] = []
        self.eof = False
        self._buf = b""
        self.flush()

    # -- plumbing --------------------------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.eof:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _feed(self, data: bytes) -> None:
        buf = self._buf + data
        passthrough = bytearray()
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            end = pos + 9 + length
            if end > len(buf):
                break
            if buf[pos + 3] == GOAWAY:
                if passthrough:
                    self._process(bytes(passthrough))
                    passthrough.clear()
                payload = buf[pos + 9 : end]
                self.goaways.append(
                    GoAway(
                        int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                        int.from_bytes(payload[4:8], "big"),
                        bytes(payload[8:]),
                    )
                )
            else:
                passthrough += buf[pos:end]
            pos = end
        self._buf = buf[pos:]
        if passthrough:
            self._process(bytes(passthrough))

    def _process(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if not any(s.headers for s in self.streams.values()):
                self.frames_before_first_headers.append(type(event).__name__)
            if isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].headers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams[event.stream_id]
                if stream.keep_data:
                    stream.data += event.data
                stream.received += event.flow_controlled_length
                if self.auto_ack:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                else:
                    stream.unacked += event.flow_controlled_length
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id].reset = event.error_code
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.remote_settings[int(code)] = change.new_value
            elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
                self.connection_window_updates.append(event.delta)
            elif isinstance(event, h2.events.PingAckReceived):
                self.pings_acked.append(event.ping_data)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            if self.eof:
                raise ConnectionError(f"connection closed while waiting for {what}")
            self.pump(min(left, 0.5))

    def wait_eof(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof:
            if time.monotonic() > deadline:
                raise TimeoutError("server did not close the connection")
            self.pump(0.5)

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        end: bool = True,
        headers: Iterable[tuple[bytes, bytes]] = (),
        keep_data: bool = True,
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream(sid, keep_data=keep_data)
        head = [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", f"127.0.0.1:{self.port}".encode()),
            (b":path", path.encode()),
            *headers,
        ]
        self.h2.send_headers(sid, head, end_stream=end and not body)
        if body:
            assert len(body) <= self.h2.local_flow_control_window(sid)
            for i in range(0, len(body), 16384):
                last = end and i + 16384 >= len(body)
                self.h2.send_data(sid, body[i : i + 16384], end_stream=last)
        self.flush()
        return sid

    def response(self, sid: int, timeout: float = 15) -> Stream:
        stream = self.streams[sid]
        self.wait_for(lambda: stream.done, timeout, f"the response on stream {sid}")
        return stream

    def get(self, path: str, timeout: float = 15) -> Stream:
        return self.response(self.request("GET", path), timeout)

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
        self.h2.reset_stream(sid, code)
        self.flush()

    def ping(self, data: bytes) -> None:
        self.h2.ping(data)
        self.flush()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def no_errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if "[ERROR]" in line or "Traceback" in line]


# -- request bodies: the server buffers at most what its windows advertise -------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("loop", "small_windows"), [("trio", True), ("asyncio", True), ("asyncio", False)])
def test_slow_app_upload_is_bounded_by_windows(serve, loop: str, small_windows: bool) -> None:
    if small_windows:
        window = 65_535  # stream and connection window: the tightest bound the protocol allows
        flags = ["--initial-window-size", str(window), "--connection-window-size", str(window)]
    else:
        window = 262_144  # the default stream window (the 1 MiB connection window is not the limit here)
        flags = []
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log", *flags)
    pid = server.proc.pid
    total = 50 * MB
    block = os.urandom(MB)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        assert client.get("/hello").data == b"hello"
        assert client.remote_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == window
        baseline = rss_bytes(pid)
        sid = client.request("POST", f"/upload?key={key}&sleep_every=4&sleep=0.002", end=False)
        digest = hashlib.sha256()
        sent = 0
        probes: list[tuple[int, int, int]] = []  # (sent, consumed, max_chunk) while the client was blocked
        peak_rss = baseline
        next_probe = 2 * MB
        deadline = time.monotonic() + 40
        while sent < total:
            assert time.monotonic() < deadline, f"upload stalled at {sent} bytes"
            offset = sent % MB
            piece = memoryview(block)[offset : offset + min(MB - offset, total - sent)]
            n = client.send_body(sid, piece)
            if n:
                digest.update(piece[:n])
                sent += n
                continue
            # Blocked: the client has used every byte of window the server granted.
            if sent >= next_probe:
                next_probe += 5 * MB
                probe = client.get(f"/progress?key={key}")
                probes.append((sent, int(probe.headers[b"x-consumed"]), int(probe.headers[b"x-max-chunk"])))
                peak_rss = max(peak_rss, rss_bytes(pid))
                continue
            client.pump(0.5)
        client.h2.end_stream(sid)
        client.flush()
        result = client.response(sid, timeout=30)
        peak_rss = max(peak_rss, rss_bytes(pid))

    assert result.status == 200, result.data
    assert json.loads(result.data) == {"length": total, "sha256": digest.hexdigest()}
    assert len(probes) >= 8, probes
    for sent_then, consumed, max_chunk in probes:
        # Bytes the client got to send beyond what the app took: only the advertised window
        # (plus, under asyncio, at most one receive() that was acknowledged but not yet counted).
        assert max_chunk <= window
        assert 0 <= sent_then - consumed <= window + max_chunk, (sent_then, consumed, max_chunk)
    # The app really was the bottleneck: at some probe the window was (nearly) full of unread bytes.
    assert max(s - c for s, c, _ in probes) > window // 4, probes
    assert peak_rss - baseline < 40 * MB, (baseline, peak_rss)


# -- response bodies: send() blocks while the client does not read --------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", LOOPS)
def test_slow_client_download_blocks_app_send(serve, loop: str) -> None:
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log")
    pid = server.proc.pid
    total, chunk, seed = 50 * MB, 65_536, 7
    window = 65_535  # the client's (default) stream and connection receive windows
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        warm = client.get("/hello")
        client.ack(warm.stream_id)
        baseline = rss_bytes(pid)
        sid = client.request("GET", f"/download?key={key}&size={total}&chunk={chunk}&seed={seed}")
        stream = client.streams[sid]
        digest = hashlib.sha256()
        hashed = 0
        probes: list[tuple[int, int, int]] = []  # (received, app sent, sends)
        peak_rss = baseline
        next_probe = 1 * MB
        deadline = time.monotonic() + 45
        while not stream.done:
            assert time.monotonic() < deadline, f"download stalled at {stream.received} bytes"
            client.pump(0.5)
            if stream.data:
                digest.update(stream.data)
                hashed += len(stream.data)
                stream.data.clear()
            if stream.done or client.h2.remote_flow_control_window(sid) > 0:
                continue  # the server may still send: wait until it has filled our window
            if stream.received >= next_probe:
                next_probe += 5 * MB
                if len(probes) == 2:
                    time.sleep(0.3)  # a really slow reader: the app must stay blocked meanwhile
                probe = client.get(f"/progress?key={key}")
                client.ack(probe.stream_id)
                probes.append((stream.received, int(probe.headers[b"x-sent"]), int(probe.headers[b"x-sends"])))
                peak_rss = max(peak_rss, rss_bytes(pid))
            # Read in small bites: hand back a quarter of the window at a time.
            client.ack(sid, window // 4)
        peak_rss = max(peak_rss, rss_bytes(pid))

    assert stream.ended and stream.status == 200, (stream.headers, stream.reset)
    assert hashed == total == stream.received
    expected = hashlib.sha256()
    for piece in random_chunks(seed, total, chunk):
        expected.update(piece)
    assert digest.hexdigest() == expected.hexdigest()
    assert len(probes) >= 8, probes
    for received, app_sent, _sends in probes:
        # send() returned only for bytes that fit in the window we granted: the app is held back.
        assert received - chunk <= app_sent <= received + window, (received, app_sent)
        assert app_sent < total
    assert peak_rss - baseline < 40 * MB, (baseline, peak_rss)
    server.wait_for_log(f"flow-app: {key} download complete")


# -- client resets ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
def test_reset_while_app_waits_for_body(serve, loop: str) -> None:
    server = serve("apps.flow:app", "--loop", loop)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sid = client.request("POST", f"/wait-body?key={key}", body=b"x" * 1000, end=False)
        server.wait_for_log(f"flow-app: {key} received 1000 bytes")
        client.reset(sid)
        server.wait_for_log(f"flow-app: {key} got http.disconnect after 1000 bytes")
        # The connection is still good for more requests.
        again = client.get("/hello")
        assert again.status == 200 and again.data == b"hello"
        assert not client.goaways and not client.eof
        server.wait_for_log(rf'"POST /wait-body\?key={key} HTTP/2" .*stream={sid}')
    assert no_errors(server.output) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("on_error", ["raise", "return"])
@pytest.mark.parametrize("loop", LOOPS)
def test_reset_while_app_blocked_in_send(serve, loop: str, on_error: str) -> None:
    server = serve("apps.flow:app", "--loop", loop)
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/download?key={key}&size={50 * MB}&on_error={on_error}", keep_data=False)
        stream = client.streams[sid]
        client.wait_for(lambda: stream.received >= 65_535, what="a full window of response body")
        probe = client.get(f"/progress?key={key}")
        assert int(probe.headers[b"x-sent"]) < 50 * MB  # the app is stuck in send()
        client.reset(sid)
        line = server.wait_for_log(f"flow-app: {key} send failed")
        assert "oserror=True" in line
        client.ack(sid)  # give back the connection window the reset stream's bytes used
        again = client.get("/hello")
        assert again.status == 200 and again.data == b"hello"
        # The stream's access log line comes after anything the server logs about the stream.
        server.wait_for_log(rf'"GET /download\?key={key}\S* HTTP/2" .*stream={sid}')
    assert no_errors(server.output) == []
