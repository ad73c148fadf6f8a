"""Every call of the ngh2 prototype (bench/ngh2_codec.py) once, against an in-memory h2 client.

Run:  python bench/ngh2_codec.py   (or python -m bench.ngh2_selfcheck)

Prints one line per check and exits 1 if any failed. It shows that the
interface is enough for what h2gate does today (manual flow control, windows
net of queued bytes, trailers, resets, PING, GOAWAY, RFC 8441, push,
PRIORITY_UPDATE, raw frames, stream and connection errors); the integration
round replaces it with the core's own conformance and attack suites.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame

from bench import ngh2_codec as nc

GET = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"example.test")]
POST = [(b":method", b"POST"), *GET[1:]]
SETTINGS = {0x3: 100, 0x4: 262_144, 0x6: 65_536, 0x8: 1, 0x9: 1}


class Pair:
    """A client (h2) and the prototype codec, wired back to back in memory."""

    def __init__(self, client_window: int = 65_535) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window}
        )
        self.client.initiate_connection()
        self.codec = nc.Ngh2Codec()
        self.codec.initiate(SETTINGS, connection_window=1 << 20)
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        self.pump()

    def pump(self, raw: bytes = b"") -> None:
        """Move bytes both ways until both sides are quiet."""
        for _ in range(50):
            up = self.client.data_to_send() + raw
            raw = b""
            if up:
                self.server_events += self.codec.receive(up)
            down = self.codec.data_to_send()
            if down:
                self.client_events += self.client.receive_data(down)
            if not up and not down:
                return

    def take(self, kind: type, side: str = "server") -> list[Any]:
        events = self.server_events if side == "server" else self.client_events
        found = [e for e in events if isinstance(e, kind)]
        events[:] = [e for e in events if not isinstance(e, kind)]
        return found


def body_of(pair: Pair, sid: int) -> bytes:
    return b"".join(e.data for e in pair.take(h2.events.DataReceived, "client") if e.stream_id == sid)


def check_get() -> str:
    pair = Pair()
    assert pair.client.remote_settings.enable_connect_protocol == 1
    assert pair.client.outbound_flow_control_window == 1 << 20, pair.client.outbound_flow_control_window
    pair.client.send_headers(1, GET, end_stream=True)
    pair.pump()
    (req,) = pair.take(nc.RequestReceived)
    assert req.ended and (b":path", b"/") in req.headers
    pair.codec.send_headers(1, [(b":status", b"200")], end_stream=False)
    pair.codec.send_data(1, b"hello", end_stream=True)
    pair.pump()
    assert body_of(pair, 1) == b"hello" and pair.take(h2.events.StreamEnded, "client")
    return "GET answered; SETTINGS and the 1 MiB connection window reached the client"


def check_manual_flow_control() -> str:
    pair = Pair()
    pair.client.send_headers(1, POST)
    for _ in range(15):
        pair.client.send_data(1, b"u" * 10_000)
    pair.pump()
    got = pair.take(nc.DataReceived)
    assert sum(e.flow_length for e in got) == 150_000
    before = pair.client.streams[1].outbound_flow_control_window
    assert before == 262_144 - 150_000, before  # nothing credited back on its own
    for e in got:
        pair.codec.acknowledge_received(e.stream_id, e.flow_length)
    pair.pump()
    after = pair.client.streams[1].outbound_flow_control_window
    assert after > before, (before, after)
    # libnghttp2 sends WINDOW_UPDATE once half a window was acknowledged (150,000 > 262,144 / 2)
    return f"no WINDOW_UPDATE until acknowledged; then the stream window went {before} -> {after}"


def check_window_and_download() -> str:
    pair = Pair(client_window=65_535)
    pair.client.send_headers(1, GET, end_stream=True)
    pair.pump()
    pair.codec.send_headers(1, [(b":status", b"200")], end_stream=False)
    first = pair.codec.window(1)
    pair.codec.send_data(1, b"d" * first, end_stream=False)
    assert pair.codec.window(1) == 0  # net of what is queued, before any byte left
    pair.pump()
    received = body_of(pair, 1)
    pair.client.acknowledge_received_data(len(received), 1)
    pair.pump()
    assert pair.take(nc.WindowUpdated) and pair.codec.window(1) > 0
    rest = 100_000 - first
    while rest:
        n = min(rest, pair.codec.window(1))
        pair.codec.send_data(1, b"d" * n, end_stream=n == rest)
        rest -= n
        pair.pump()
        got = body_of(pair, 1)
        received += got
        if got:
            pair.client.acknowledge_received_data(len(got), 1)
        pair.pump()
    assert len(received) == 100_000 and pair.take(h2.events.StreamEnded, "client")
    return f"window() {first} then 0 while queued; a 100,000-byte body paced by WINDOW_UPDATEs"


def check_trailers() -> str:
    pair = Pair()
    pair.client.send_headers(1, POST)
    pair.client.send_data(1, b"x")
    pair.client.send_headers(1, [(b"x-sum", b"1")], end_stream=True)
    pair.pump()
    assert pair.take(nc.TrailersReceived)[0].headers == [(b"x-sum", b"1")]
    pair.codec.send_headers(1, [(b":status", b"200")], end_stream=False)
    pair.codec.send_data(1, b"ok", end_stream=False)
    pair.codec.send_trailers(1, [(b"grpc-status", b"0")])
    pair.pump()
    (trailers,) = pair.take(h2.events.TrailersReceived, "client")
    assert trailers.headers == [(b"grpc-status", b"0")]
    return "trailers both ways"


def check_resets() -> str:
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.client.send_headers(3, GET, end_stream=True)
    pair.pump()
    pair.client.reset_stream(1, 8)
    pair.pump()
    assert pair.take(nc.StreamReset) == [nc.StreamReset(1, 8)]
    try:
        pair.codec.send_headers(1, [(b":status", b"200")], end_stream=True)
        raise AssertionError("sent on a reset stream")
    except nc.StreamGone:
        pass
    pair.codec.reset(3, 2)
    pair.pump()
    assert [e.error_code for e in pair.take(h2.events.StreamReset, "client")] == [2]
    assert not pair.take(nc.StreamProtocolError)  # our own and the peer's resets are not ngh2's
    return "client reset seen; sending on it raises StreamGone; our RST_STREAM reaches the client"


def check_ping_goaway() -> str:
    pair = Pair()
    pair.codec.ping(b"12345678")
    pair.pump()
    assert pair.take(nc.PingAcked) == [nc.PingAcked(b"12345678")]
    pair.client.send_headers(1, GET, end_stream=True)
    pair.pump()
    pair.codec.goaway(1, 0, b"bye")
    pair.pump()
    (gone,) = pair.take(h2.events.ConnectionTerminated, "client")
    assert gone.last_stream_id == 1 and gone.additional_data == b"bye"
    return "PING acked; GOAWAY with last stream and debug data"


def check_extended_connect_push_priority() -> str:
    pair = Pair()
    connect = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]]
    pair.client.send_headers(1, connect)
    pair.client.send_headers(3, GET, end_stream=True)
    raw = ((1).to_bytes(4, "big") + b"u=1").rjust(7)
    priority = len(raw).to_bytes(3, "big") + b"\x10\x00" + bytes(4) + raw
    pair.pump(priority)
    requests = pair.take(nc.RequestReceived)
    assert (b":protocol", b"websocket") in requests[0].headers and not requests[0].ended
    assert pair.take(nc.PriorityUpdated) == [nc.PriorityUpdated(1, b"u=1")]
    promised = pair.codec.push(3, [(b":method", b"GET"), (b":path", b"/style.css"), *GET[2:]])
    pair.codec.send_headers(promised, [(b":status", b"200")], end_stream=True)
    pair.pump()
    assert pair.take(h2.events.PushedStreamReceived, "client")[0].pushed_stream_id == promised
    return f"RFC 8441 :protocol kept; PRIORITY_UPDATE event; PUSH_PROMISE of stream {promised}"


def check_raw_and_errors() -> str:
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.pump()
    block = pair.codec.encode_block([(b":status", b"103"), (b"link", b"</a.css>; rel=preload")])
    pair.codec.write_raw(len(block).to_bytes(3, "big") + b"\x01\x04" + (1).to_bytes(4, "big") + block)
    pair.codec.send_headers(1, [(b":status", b"204")], end_stream=True)
    pair.pump()
    assert pair.take(h2.events.InformationalResponseReceived, "client")  # the client's decoder took the block
    bad = HeadersFrame(3, Encoder().encode([*GET, (b"Upper", b"x")]))
    bad.flags.add("END_HEADERS")
    bad.flags.add("END_STREAM")
    pair.pump(bad.serialize())
    (error,) = pair.take(nc.StreamProtocolError)
    assert error.stream_id == 3 and error.code == 1
    flood = HeadersFrame(5, Encoder().encode(GET))
    try:
        pair.codec.receive(flood.serialize() + ContinuationFrame(5, b"").serialize() * 10_000)
        raise AssertionError("CONTINUATION flood accepted")
    except nc.ConnectionProtocolError as exc:
        assert exc.code == nc.ENHANCE_YOUR_CALM and not exc.sent
    return "raw 103 with encode_block decoded; uppercase field -> StreamProtocolError 1; CONTINUATION flood -> 11"


CHECKS: list[Callable[[], str]] = [
    check_get,
    check_manual_flow_control,
    check_window_and_download,
    check_trailers,
    check_resets,
    check_ping_goaway,
    check_extended_connect_push_priority,
    check_raw_and_errors,
]


def main() -> int:
    failed = 0
    for check in CHECKS:
        try:
            print(f"ok    {check.__name__}: {check()}")
        except Exception as exc:
            failed += 1
            print(f"FAIL  {check.__name__}: {type(exc).__name__}: {exc}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
