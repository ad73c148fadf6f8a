"""ServerH2Connection's lean DATA and HEADERS paths write exactly what h2's own send_data / send_headers write."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2.exceptions import FlowControlError, StreamClosedError

from h2gate.internals.h2conn import ServerH2Connection

REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"x")]


def pair(server: h2.connection.H2Connection, *, respond: bool = True) -> h2.connection.H2Connection:
    """Handshake ``server`` with a client and open stream 1 (with a response started); returns the client."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.send_headers(1, REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    if respond:
        server.send_headers(1, [(b":status", b"200")])
    server.data_to_send()
    return client


def servers(*, respond: bool = True) -> tuple[h2.connection.H2Connection, ServerH2Connection]:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    plain, lean = h2.connection.H2Connection(config), ServerH2Connection(config)
    pair(plain, respond=respond)
    pair(lean, respond=respond)
    return plain, lean


def test_same_bytes_and_windows_as_h2() -> None:
    plain, lean = servers()
    for conn in (plain, lean):
        conn.send_data(1, memoryview(b"a" * 16_384))
        conn.send_data(1, b"")
        conn.send_data(1, b"bc" * 100)
        conn.send_data(1, b"end", end_stream=True)
    assert lean.data_to_send() == plain.data_to_send()
    assert lean.outbound_flow_control_window == plain.outbound_flow_control_window
    assert lean.streams[1].closed == plain.streams[1].closed


def test_errors_are_h2s() -> None:
    _, lean = servers()
    with pytest.raises(FlowControlError):
        for _ in range(10):
            lean.send_data(1, b"x" * 16_384)  # the client's 65,535-byte window runs out
    lean.reset_stream(1)
    with pytest.raises(StreamClosedError):
        lean.send_data(1, b"x")


def test_queue_data_frames_like_h2_and_keeps_order_with_h2s_frames() -> None:
    """One queue_data call = the frames h2 writes for the same bytes, split at the peer's frame size."""
    plain, lean = servers()
    body = bytes(range(256)) * 150  # 38,400 bytes: two full 16 KiB frames and a short one
    plain.send_data(1, body[:16_384])
    plain.send_data(1, body[16_384:32_768])
    plain.ping(b"12345678")  # a control frame queued by h2 between DATA frames keeps its place
    plain.send_data(1, body[32_768:])
    assert lean.queue_data(1, body[:32_768])
    lean.ping(b"12345678")
    assert lean.queue_data(1, memoryview(body)[32_768:])
    assert lean.data_to_send() == plain.data_to_send()
    assert lean.data_to_send() == b""
    assert lean.outbound_flow_control_window == plain.outbound_flow_control_window
    assert lean.streams[1].outbound_flow_control_window == plain.streams[1].outbound_flow_control_window


def test_queue_data_declines_what_h2_must_handle() -> None:
    _, lean = servers()
    assert not lean.queue_data(3, b"x")  # no such stream
    assert not lean.queue_data(1, b"")  # an empty frame that ends nothing: h2's own path
    assert not lean.queue_data(1, b"x" * 70_000)  # more than the 65,535-byte window
    assert lean.data_to_send() == b""


def test_mutable_buffer_is_copied_before_queuing() -> None:
    _, lean = servers()
    buf = bytearray(b"abc")
    assert lean.queue_data(1, buf)
    buf[:] = b"XYZ"  # the app reuses its buffer before the writer runs
    assert lean.data_to_send().endswith(b"abc")


def test_partial_reads_and_clearing_cover_queued_frames() -> None:
    plain, lean = servers()
    for conn in (plain, lean):
        conn.send_data(1, b"0123456789")
    first = lean.data_to_send(5)
    assert first + lean.data_to_send() == plain.data_to_send()
    lean.send_data(1, b"dropped")
    lean.clear_outbound_data_buffer()
    assert lean.data_to_send() == b""


@pytest.mark.parametrize("size", [5, 40_000, 0])
def test_queue_data_ends_the_stream_like_h2(size: int) -> None:
    """END_STREAM rides on the last frame of the span, or on an empty DATA frame, as h2 writes them."""
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    plain, lean = servers()
    frames = [body[start : start + 16_384] for start in range(0, size, 16_384)]
    for frame in frames[:-1]:
        plain.send_data(1, frame)
    if frames:
        plain.send_data(1, frames[-1], end_stream=True)
    else:
        plain.end_stream(1)
    assert lean.queue_data(1, body, end_stream=True)
    assert lean.data_to_send() == plain.data_to_send()
    assert lean.streams[1].closed and plain.streams[1].closed
    assert lean.outbound_flow_control_window == plain.outbound_flow_control_window
    with pytest.raises(StreamClosedError):
        lean.queue_data(1, b"more")


def checked(status: bytes = b"200", extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b":status", status), (b"content-type", b"text/plain"), (b"x-one", b"1"), *(extra or [])]


def plain_send_checked(conn: h2.connection.H2Connection, block: list[tuple[bytes, bytes]], end: bool) -> None:
    """What Exchange.send_headers did before the lean path: h2's send_headers with its outbound pass off."""
    conn.config.normalize_outbound_headers = conn.config.validate_outbound_headers = False
    try:
        conn.send_headers(1, block, end_stream=end)
    finally:
        conn.config.normalize_outbound_headers = conn.config.validate_outbound_headers = True


#: A value that HPACK cannot squeeze into one 16 KiB frame: the block needs CONTINUATION frames.
BIG = bytes(range(33, 127)) * 400


@pytest.mark.parametrize("end_stream", [False, True])
@pytest.mark.parametrize("extra", [[], [(b"x-big", BIG)]], ids=["one-frame", "continuation"])
def test_checked_headers_are_h2s_bytes_and_states(end_stream: bool, extra: list[tuple[bytes, bytes]]) -> None:
    plain, lean = servers(respond=False)
    plain.ping(b"12345678")  # h2's own frames queued before the block keep their place
    lean.ping(b"12345678")
    plain_send_checked(plain, checked(extra=extra), end_stream)
    lean.send_checked_headers(1, checked(extra=extra), end_stream)
    assert lean._pieces  # the lean path was taken
    wire = lean.data_to_send()
    assert wire == plain.data_to_send()
    assert (len(wire) > 16_384 + 17) == bool(extra)
    assert lean.streams[1].state_machine.state == plain.streams[1].state_machine.state
    assert lean.streams[1].closed == end_stream


def test_checked_headers_reach_a_client_and_keep_hpack_in_step() -> None:
    """Two responses in a row: the second is encoded against the dynamic table the first one filled."""
    server = ServerH2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    client = pair(server, respond=False)
    client.send_headers(3, REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_checked_headers(1, checked(extra=[(b"x-big", BIG)]), False)
    server.queue_data(1, b"body", end_stream=True)
    server.send_checked_headers(3, checked(b"404"), True)
    events = client.receive_data(server.data_to_send())
    responses = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert [(e.stream_id, e.headers) for e in responses] == [
        (1, checked(extra=[(b"x-big", BIG)])),
        (3, checked(b"404")),
    ]
    assert [e.data for e in events if isinstance(e, h2.events.DataReceived)] == [b"body"]
    assert sorted(e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)) == [1, 3]


def test_informational_and_trailers_take_h2s_path_with_the_same_result() -> None:
    plain, lean = servers(respond=False)
    hints = [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]
    trailers = [(b"x-checksum", b"abc")]
    plain_send_checked(plain, hints, False)
    plain_send_checked(plain, checked(), False)
    plain_send_checked(plain, trailers, True)
    lean.send_checked_headers(1, hints, False)
    assert not lean._pieces  # a 1xx block goes through h2
    lean.send_checked_headers(1, checked(), False)
    lean.send_checked_headers(1, trailers, True)
    assert lean.data_to_send() == plain.data_to_send()
    assert lean.streams[1].closed and plain.streams[1].closed
    assert lean.config.validate_outbound_headers and lean.config.normalize_outbound_headers  # switched back on


def test_checked_headers_on_a_reset_stream_raise_like_h2() -> None:
    _, lean = servers(respond=False)
    lean.reset_stream(1)
    with pytest.raises(StreamClosedError):
        lean.send_checked_headers(1, checked(), False)
