"""ServerH2Connection.send_data's lean path writes exactly what h2's own send_data writes."""

from __future__ import annotations

import h2.config
import h2.connection
import pytest
from h2.exceptions import FlowControlError, StreamClosedError

from h2gate.h2state import ServerH2Connection

REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"x")]


def pair(server: h2.connection.H2Connection) -> h2.connection.H2Connection:
    """Handshake ``server`` with a client and open stream 1 with a response started; returns the client."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.send_headers(1, REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    server.data_to_send()
    return client


def servers() -> tuple[h2.connection.H2Connection, ServerH2Connection]:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    plain, lean = h2.connection.H2Connection(config), ServerH2Connection(config)
    pair(plain)
    pair(lean)
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
    assert not lean.queue_data(1, b"")  # an empty frame: h2's own path
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
