"""The protocol core without a socket: each decision it makes, driven byte by byte with a fake clock."""

from __future__ import annotations

import logging
import struct

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, SettingsFrame, WindowUpdateFrame

from h2gate.errors import ErrorCode
from h2gate.protocol.closing import DRAIN_PING_TIMEOUT, FIRST_REQUEST_WAIT, MAX_STREAM_ID
from h2gate.protocol.lifecycle import Phase
from tests.conformance.frames import PREFACE, headers_frame, raw_frame, rst_frame, window_update
from tests.protocol.harness import Harness, goaway_bytes

PRIORITY_TYPE, PRIORITY_UPDATE_TYPE = 0x2, 0x10


def test_handshake_opens_the_connection_and_arms_the_idle_timer() -> None:
    h = Harness()
    assert h.core.phase is Phase.HANDSHAKE
    assert any(isinstance(f, SettingsFrame) for f in h.frames)  # our preface went out at start
    answer = h.handshake()
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in answer)
    assert h.core.phase is Phase.OPEN
    assert h.core.deadlines.armed("idle") and not h.core.deadlines.armed("handshake")


def test_a_request_is_spawned_and_answered() -> None:
    h = Harness()
    h.handshake()
    h.request(1, "/x?y=1")
    (stream,) = h.spawned
    assert stream.head.method == b"GET" and stream.head.target == b"/x?y=1" and stream.request_ended
    assert not h.core.deadlines.armed("idle")
    h.respond(1, 200, b"hello")
    assert h.responses(1)[0][0] == (b":status", b"200")
    body = b"".join(f.data for f in h.frames if isinstance(f, DataFrame) and f.stream_id == 1)
    assert body == b"hello" and stream.state.done and stream.status == 200
    h.finish(1)
    assert not h.core.streams and h.core.deadlines.armed("idle")


def test_the_body_is_acknowledged_only_as_the_app_reads_it() -> None:
    h = Harness(initial_window_size=65_535)
    h.handshake()
    h.request(1, "/upload", method="POST", end_stream=False)
    for _ in range(3):
        h.data(1, b"a" * 16_000)
    stream = h.stream(1)
    assert stream.buffered == 48_000
    assert not any(isinstance(f, WindowUpdateFrame) and f.stream_id == 1 for f in h.frames)

    import trio

    async def read() -> bytes:
        return await stream.read()

    assert trio.run(read) == b"a" * 48_000
    h.collect()
    assert any(isinstance(f, WindowUpdateFrame) and f.stream_id == 1 for f in h.frames)


def test_first_frame_not_settings_is_refused_at_once() -> None:
    h = Harness()
    h.feed(PREFACE, h.ping_bytes())
    (goaway,) = h.goaways()
    assert goaway.error_code == ErrorCode.PROTOCOL_ERROR and h.core.phase is Phase.CLOSED
    assert not h.pings() and not [f for f in h.frames if isinstance(f, PingFrame)]  # nothing of it reached the codec


def test_a_frame_longer_than_max_frame_size_is_refused_on_its_header() -> None:
    h = Harness()
    h.handshake()
    h.feed(raw_frame(0x0, 0x0, 1, b"", length=10_000_000)[:9])  # only the 9-byte header has arrived
    (goaway,) = h.goaways()
    assert goaway.error_code == ErrorCode.FRAME_SIZE_ERROR and h.core.phase is Phase.CLOSED


def test_garbage_after_the_preface_is_refused_without_buffering() -> None:
    h = Harness()
    h.feed(PREFACE, b"\xff\xff\xff\x04\x00\x00\x00\x00\x00" + b"x" * 100)  # a "SETTINGS" of 16 MiB
    assert h.goaways()[0].error_code == ErrorCode.FRAME_SIZE_ERROR


def test_malformed_request_then_client_goaway_in_one_read(caplog: pytest.LogCaptureFixture) -> None:
    """Defect 1: the reset of the malformed stream met h2's closed state machine and raised."""
    h = Harness()
    h.handshake()
    with caplog.at_level(logging.DEBUG, logger="h2gate"):
        h.feed(h.request_bytes(1, extra=[("connection", "close")]), goaway_bytes(0, ErrorCode.PROTOCOL_ERROR))
    assert h.core.phase is Phase.CLOSED and not h.spawned
    assert [r.error_code for r in h.rsts(1)] == [ErrorCode.PROTOCOL_ERROR]
    assert not h.goaways()  # the client ended the connection: no GOAWAY of ours after its own
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_connection_error_fails_running_streams_as_disconnects() -> None:
    """Defect 3: an app still running when the connection dies sees a disconnect, never an app error."""
    import trio

    from h2gate.errors import ClientDisconnected

    h = Harness()
    h.handshake()
    h.request(1, "/slow")
    stream = h.stream(1)
    h.feed(data_frame_on_idle := raw_frame(0x0, 0x0, 99, b"x"))  # DATA on an idle stream: connection error
    assert data_frame_on_idle and h.core.phase is Phase.CLOSED and h.goaways()
    assert stream.disconnected

    async def send() -> None:
        await stream.send_headers([(b":status", b"200")])

    with pytest.raises(ClientDisconnected):
        trio.run(send)


def test_a_ping_flood_gets_one_goaway_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """Defect 4: every read after the limit broke used to send another GOAWAY and log another line."""
    h = Harness(max_control_frames=100)
    h.handshake()
    with caplog.at_level(logging.INFO, logger="h2gate"):
        for _ in range(50):
            h.core.receive(h.ping_bytes() * 100)  # the writer never runs: the replies pile up
    h.collect()
    assert [g.error_code for g in h.goaways()] == [ErrorCode.ENHANCE_YOUR_CALM]
    assert len([r for r in caplog.records if "flood" in r.getMessage()]) == 1


def test_log_lines_say_what_happened_in_words(caplog: pytest.LogCaptureFixture) -> None:
    """Defect 5: h2's bare stream number reached the log line."""
    h = Harness()
    h.handshake()
    h.request(1)
    h.respond(1)
    with caplog.at_level(logging.INFO, logger="h2gate"):
        h.data(1, b"late", end_stream=True)  # DATA on a stream both sides ended: STREAM_CLOSED
    (goaway,) = h.goaways()
    assert goaway.error_code == ErrorCode.STREAM_CLOSED
    (line,) = [r.getMessage() for r in caplog.records]
    assert "frame on stream 1 after it was closed" in line and "GOAWAY STREAM_CLOSED" in line


def test_excess_streams_in_a_first_flight_are_refused_one_by_one() -> None:
    h = Harness(max_concurrent_streams=10, max_resets_per_second=1000)
    h.handshake()
    h.feed(*(h.request_bytes(sid) for sid in range(1, 2 * 35, 2)))  # 35 streams in one read
    assert len(h.spawned) == 10
    assert len(h.rsts()) == 25 and {r.error_code for r in h.rsts()} == {ErrorCode.REFUSED_STREAM}
    assert not h.goaways() and h.core.phase is Phase.OPEN


def test_graceful_drain_goaway_ping_then_final_goaway_after_the_ack() -> None:
    h = Harness()
    h.handshake()
    h.request(1)
    h.core.drain()
    h.collect()
    (first,) = h.goaways()
    assert (first.last_stream_id, first.error_code) == (MAX_STREAM_ID, 0)
    (ping,) = h.pings()
    h.request(3)  # crossed our GOAWAY on the wire: still served
    assert len(h.spawned) == 2
    h.feed(h.ping_bytes(ping.opaque_data, ack=True))
    final = h.goaways()[-1]
    assert (final.last_stream_id, final.error_code) == (3, 0) and h.core.phase is Phase.CLOSING
    h.request(5)  # after the final GOAWAY: ignored, the client retries it elsewhere
    assert len(h.spawned) == 2
    for sid in (1, 3):
        h.respond(sid)
        h.finish(sid)
    assert h.core.phase is Phase.CLOSED and h.core.linger and len(h.goaways()) == 2


def test_drain_without_an_ack_sends_the_final_goaway_after_a_deadline() -> None:
    h = Harness()
    h.handshake()
    h.core.drain()
    h.tick(DRAIN_PING_TIMEOUT + 0.01)
    assert [g.last_stream_id for g in h.goaways()] == [MAX_STREAM_ID, 0]
    assert h.core.phase is Phase.CLOSED


def test_idle_connection_is_drained_after_keep_alive_timeout() -> None:
    h = Harness(keep_alive_timeout=5)
    h.handshake()
    h.tick(4.9)
    assert not h.goaways()
    h.tick(0.2)
    assert [g.last_stream_id for g in h.goaways()] == [MAX_STREAM_ID]


def test_handshake_timeout_closes() -> None:
    h = Harness(handshake_timeout=2)
    h.tick(2.1)
    assert h.core.phase is Phase.CLOSED and h.goaways()


def test_header_block_timeout() -> None:
    h = Harness(header_timeout=3)
    h.handshake()
    h.feed(headers_frame(1, h.block([(":method", "GET")]), end_headers=False))
    h.tick(3.1)
    assert [g.error_code for g in h.goaways()] == [ErrorCode.ENHANCE_YOUR_CALM]


def test_idle_request_body_is_reset_after_body_timeout() -> None:
    h = Harness(body_timeout=5)
    h.handshake()
    h.request(1, method="POST", end_stream=False)
    h.data(1, b"x")
    h.tick(4)
    h.data(1, b"y")  # activity pushes the deadline
    h.tick(4)
    assert not h.rsts(1)
    h.stream(1)._chunks.clear()  # the app read what there was (no buffered bytes hold the deadline back)
    h.stream(1).buffered = 0
    h.tick(6)  # its deadline was pushed to 5 s after the last check while bytes waited for the app
    assert [r.error_code for r in h.rsts(1)] == [ErrorCode.CANCEL] and h.stream(1).disconnected


def test_shutdown_cuts_what_still_runs_at_the_grace_period() -> None:
    h = Harness()
    h.handshake()
    h.request(1)
    h.core.shutdown(5)
    h.tick(5.1)
    stream = h.stream(1)
    assert stream.cut and [r.error_code for r in h.rsts(1)] == [ErrorCode.CANCEL]
    assert h.core.phase is Phase.CLOSED


@pytest.mark.parametrize(
    ("frame", "flood"),
    [
        (raw_frame(PRIORITY_TYPE, 0, 1, struct.pack(">IB", 3, 10)), "PRIORITY"),
        (raw_frame(PRIORITY_UPDATE_TYPE, 0, 0, struct.pack(">I", 1) + b"u=1"), "PRIORITY"),
        (window_update(0, 1), "WINDOW_UPDATE"),
    ],
)
def test_priority_and_window_update_floods_are_refused(
    frame: bytes, flood: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(max_priority_frames_per_second=100, max_window_updates_per_second=100)
    h.handshake()
    with caplog.at_level(logging.WARNING, logger="h2gate"):
        h.feed(frame * 101)
        h.feed(frame * 1000)
    assert [g.error_code for g in h.goaways()] == [ErrorCode.ENHANCE_YOUR_CALM]
    (line,) = [r.getMessage() for r in caplog.records]
    assert flood in line


def test_window_updates_answering_our_data_are_not_a_flood() -> None:
    h = Harness(max_window_updates_per_second=10)
    h.handshake()
    h.request(1)
    h.respond(1, body=b"z" * 200_000)  # over the default window: only part goes out
    h.feed(*(window_update(0, 1000) + window_update(1, 1000) for _ in range(8)))
    assert not h.goaways()


def test_client_goaway_without_error_lets_streams_finish() -> None:
    h = Harness()
    h.handshake()
    h.request(1)
    h.feed(goaway_bytes(0, 0))
    assert h.core.phase is Phase.CLOSING
    h.respond(1)
    h.finish(1)
    assert h.core.phase is Phase.CLOSED and not h.goaways()


def test_a_client_reset_cancels_the_stream_and_counts() -> None:
    h = Harness(max_resets_per_second=3)
    h.handshake()
    for sid in (1, 3, 5, 7):
        h.request(sid, end_stream=False)
        h.feed(rst_frame(sid))
    assert h.stream(1).disconnected and h.stream(1).reset_code == ErrorCode.CANCEL
    assert [g.error_code for g in h.goaways()] == [ErrorCode.ENHANCE_YOUR_CALM]


def test_every_stream_ends_exactly_once() -> None:
    h = Harness()
    h.handshake()
    h.request(1)
    h.finish(1)
    with pytest.raises(KeyError):
        h.core.stream_finished(h.stream(1))
    assert isinstance(h.frames[0], SettingsFrame) and not isinstance(h.frames[-1], GoAwayFrame)


def python_h2_settings() -> bytes:
    """A SETTINGS frame as the Python h2 library (httpx's) writes it: these identifiers, in this order."""
    return SettingsFrame(0, {1: 4096, 2: 0, 4: 65535, 5: 16384, 8: 0, 3: 100, 6: 65536}).serialize()


def test_a_python_h2_client_gets_one_goaway_once_its_streams_are_done() -> None:
    """httpx fails every request in flight on any GOAWAY, and any frame after one (encode/httpcore#730)."""
    h = Harness()
    h.feed(PREFACE, python_h2_settings())
    h.request(1)
    h.core.drain()
    h.collect()
    assert not h.goaways() and not h.pings()  # nothing while its request is in flight
    h.request(3)  # still taken: it was sent before any GOAWAY
    h.respond(1)
    h.finish(1)
    assert not h.goaways()
    h.respond(3)
    h.finish(3)
    assert [(g.last_stream_id, g.error_code) for g in h.goaways()] == [(3, 0)]
    assert not h.pings() and h.core.phase is Phase.CLOSED
    assert isinstance(h.frames[-1], GoAwayFrame)  # the last frame of the connection


def test_a_python_h2_client_draining_in_its_handshake_still_gets_its_first_request() -> None:
    h = Harness()
    h.core.drain()  # e.g. accepted just before the server began shutting down
    h.feed(PREFACE, python_h2_settings(), h.request_bytes(1))
    assert len(h.spawned) == 1 and not h.goaways()
    h.respond(1)
    h.finish(1)
    assert [g.last_stream_id for g in h.goaways()] == [1]


def test_a_python_h2_client_draining_in_its_handshake_gets_a_moment_for_a_request_in_a_later_read() -> None:
    """httpcore writes its first HEADERS after its SETTINGS; they may arrive in separate reads."""
    h = Harness()
    h.core.drain()
    h.feed(PREFACE, python_h2_settings())
    assert not h.goaways()
    h.tick(0.2)
    h.feed(h.request_bytes(1))
    assert len(h.spawned) == 1 and not h.goaways()
    h.tick(FIRST_REQUEST_WAIT * 2)  # the wait ends while the request runs: httpx would fail it on any GOAWAY
    assert not h.goaways()
    h.respond(1)
    h.finish(1)
    assert [g.last_stream_id for g in h.goaways()] == [1]


def test_a_python_h2_client_that_sends_no_request_while_draining_gets_goaway_0_after_the_wait() -> None:
    h = Harness()
    h.feed(PREFACE, python_h2_settings())
    h.core.drain()
    h.collect()
    assert not h.goaways()
    h.tick(FIRST_REQUEST_WAIT + 0.01)
    assert [(g.last_stream_id, g.error_code) for g in h.goaways()] == [(0, 0)]
    assert h.core.phase is Phase.CLOSED


def test_a_grpc_call_cut_by_shutdown_ends_unavailable() -> None:
    """gRPC has a status for "the server is going away": UNAVAILABLE, which clients may retry elsewhere."""
    h = Harness()
    h.handshake()
    h.request(1, "/pkg.Svc/Bidi", method="POST", end_stream=False, extra=[("content-type", "application/grpc")])
    h.request(3, "/plain", method="POST", end_stream=False)
    h.core.shutdown(2)
    h.tick(2.1)
    (block,) = h.responses(1)
    assert (b"grpc-status", b"14") in block and (b":status", b"200") in block
    assert [r.error_code for r in h.rsts(1)] == [ErrorCode.NO_ERROR]  # the upload is stopped after the status
    assert [r.error_code for r in h.rsts(3)] == [ErrorCode.CANCEL]
    assert h.stream(1).cut and h.stream(1).disconnected and h.stream(3).cut


def test_a_drain_waits_for_a_slow_clients_settings_before_any_goaway() -> None:
    """GOAWAY(0) would fail an httpx request on the wire: httpcore retries only above a last id that is not 0."""
    h = Harness(handshake_timeout=10)
    h.core.shutdown(30)
    h.tick(5)
    assert not h.goaways()
    h.feed(PREFACE, python_h2_settings(), h.request_bytes(1))
    h.respond(1)
    h.finish(1)
    assert [g.last_stream_id for g in h.goaways()] == [1]


def test_a_client_that_never_sends_its_preface_is_closed_at_the_handshake_timeout() -> None:
    h = Harness(handshake_timeout=3)
    h.core.shutdown(30)
    h.tick(3.1)
    assert h.core.phase is Phase.CLOSED and [g.last_stream_id for g in h.goaways()] == [0]
