"""RFC 9113 §6: the rules of each frame type."""

from __future__ import annotations

import struct

import pytest

from tests.conformance.frames import (
    ACK,
    CANCEL,
    DATA,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_FRAME_SIZE,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    Peer,
    PingFrame,
    SettingsFrame,
    headers_frame,
    priority_payload,
    raw_frame,
    request_headers,
    settings_payload,
    window_update,
)

H2C_ONLY = ["h2c"]
H2C_AND_TLS = ["h2c", "tls"]


# -- DATA (§6.1) ---------------------------------------------------------------------------


def test_data_on_stream_zero(peer: Peer) -> None:
    peer.send(raw_frame(DATA, 0, 0, b"x"))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_data_with_padding_accepted(peer: Peer) -> None:
    sid = peer.request("/wait-body?key=padded-data", end_stream=False)
    peer.send(raw_frame(DATA, PADDED | END_STREAM, sid, bytes([4]) + b"body" + b"\0" * 4))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"4"


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_data_padding_too_long(peer: Peer) -> None:
    sid = peer.request("/wait-body?key=bad-pad", end_stream=False)
    peer.send(raw_frame(DATA, PADDED, sid, bytes([10]) + b"abc"))
    peer.expect_goaway(PROTOCOL_ERROR)


# -- HEADERS (§6.2) ------------------------------------------------------------------------


def test_headers_with_padding_and_priority(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    payload = bytes([3]) + priority_payload(0, 200) + block + b"\0\0\0"
    peer.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, sid, payload))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"hello"


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_headers_padding_too_long(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED, sid, bytes([len(block) + 5]) + block))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_headers_depending_on_itself(peer: Peer) -> None:
    sid = peer.new_stream_id()
    payload = priority_payload(sid) + peer.block(request_headers())
    peer.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, sid, payload))
    # §5.3.1: a stream error. h2gate.protocol.framecheck rewrites the dependency so h2 still decodes the block.
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()
    headers, body = peer.expect_response(peer.request())  # the HPACK state stayed in sync
    assert headers[b":status"] == b"200" and body == b"hello"


def test_headers_depending_on_itself_padded_with_continuation(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    payload = bytes([2]) + priority_payload(sid) + block[:3] + b"\0\0"
    peer.send(raw_frame(HEADERS, END_STREAM | PADDED | PRIORITY_FLAG, sid, payload))
    peer.send(raw_frame(0x9, END_HEADERS, sid, block[3:]))
    peer.expect_rst(sid, PROTOCOL_ERROR)
    headers, body = peer.expect_response(peer.request())
    assert headers[b":status"] == b"200" and body == b"hello"


# -- PRIORITY (§6.3) -----------------------------------------------------------------------


def test_priority_on_idle_stream_ignored(peer: Peer) -> None:
    peer.send(raw_frame(PRIORITY, 0, 99, priority_payload(0)))
    peer.expect_alive()


def test_priority_depending_on_itself(peer: Peer) -> None:
    peer.send(raw_frame(PRIORITY, 0, 99, priority_payload(99)))
    # §5.3.1: a stream error; h2gate.protocol.framecheck drops the frame h2 would make a connection error.
    peer.expect_rst(99, PROTOCOL_ERROR)
    peer.expect_alive()


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_provoked_stream_errors_count_as_resets(peer: Peer) -> None:
    # Each dropped frame costs an RST_STREAM: the rapid-reset budget (1000/s here) covers them (MadeYouReset).
    peer.send(b"".join(raw_frame(PRIORITY, 0, sid, priority_payload(sid)) for sid in range(101, 2400, 2)))
    peer.expect_goaway(0xB)  # ENHANCE_YOUR_CALM


def test_priority_bad_length(peer: Peer) -> None:
    sid = peer.request("/sleep?key=prio-len&seconds=0.5")
    peer.send(raw_frame(PRIORITY, 0, sid, priority_payload(0)[:4]))
    # §6.3: a stream error; h2gate.protocol.framecheck drops the frame h2 would make a connection error.
    peer.expect_rst(sid, FRAME_SIZE_ERROR)
    peer.expect_alive()


def test_priority_on_stream_zero(peer: Peer) -> None:
    peer.send(raw_frame(PRIORITY, 0, 0, priority_payload(1)))
    peer.expect_goaway(PROTOCOL_ERROR)


# -- RST_STREAM (§6.4) ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_rst_stream_on_idle_stream_first_frame(peer: Peer) -> None:
    peer.send(raw_frame(RST_STREAM, 0, 99, struct.pack(">I", CANCEL)))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_rst_stream_on_idle_stream_after_a_request(peer: Peer) -> None:
    peer.expect_response(peer.request())
    peer.send(raw_frame(RST_STREAM, 0, 99, struct.pack(">I", CANCEL)))
    # h2 ignores this once a stream was opened; h2gate.protocol.framecheck makes it the §6.4 connection error.
    peer.expect_goaway(PROTOCOL_ERROR)


def test_rst_stream_on_even_stream(peer: Peer) -> None:
    # Even ids belong to server pushes, which are disabled: such a stream is always idle.
    peer.send(raw_frame(RST_STREAM, 0, 2, struct.pack(">I", CANCEL)))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_rst_stream_right_after_headers_in_one_write(peer: Peer) -> None:
    # The stream the HEADERS opened is not idle, although h2 has not seen it when the check runs.
    sid = peer.new_stream_id()
    block = peer.block(request_headers("/sleep?key=rst-same-write&seconds=1"))
    peer.send(headers_frame(sid, block) + raw_frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
    peer.expect_alive()


def test_rst_stream_on_stream_zero(peer: Peer) -> None:
    peer.send(raw_frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_rst_stream_bad_length(peer: Peer) -> None:
    sid = peer.request("/sleep?key=rst-len&seconds=1")
    peer.send(raw_frame(RST_STREAM, 0, sid, b"\0\0\0\x08\0"))
    peer.expect_goaway(FRAME_SIZE_ERROR)


# -- SETTINGS (§6.5) -----------------------------------------------------------------------


def test_settings_acknowledged(peer: Peer) -> None:
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((MAX_FRAME_SIZE, 20000))))
    ack = peer.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    assert ack.settings == {}


def test_settings_ack_with_payload(peer: Peer) -> None:
    peer.send(raw_frame(SETTINGS, ACK, 0, settings_payload((INITIAL_WINDOW_SIZE, 100))))
    # §6.5: FRAME_SIZE_ERROR (h2 would say PROTOCOL_ERROR; h2gate.protocol.framecheck catches it first).
    peer.expect_goaway(FRAME_SIZE_ERROR)


def test_settings_length_not_multiple_of_six(peer: Peer) -> None:
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 100))[:5]))
    peer.expect_goaway(FRAME_SIZE_ERROR)


def test_settings_on_stream(peer: Peer) -> None:
    peer.send(raw_frame(SETTINGS, 0, 1, settings_payload()))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        (ENABLE_PUSH, 2, PROTOCOL_ERROR),
        (INITIAL_WINDOW_SIZE, 2**31, FLOW_CONTROL_ERROR),
        (MAX_FRAME_SIZE, 2**14 - 1, PROTOCOL_ERROR),
        (MAX_FRAME_SIZE, 2**24, PROTOCOL_ERROR),
    ],
    ids=["enable_push-2", "initial_window-2^31", "max_frame-too-small", "max_frame-too-large"],
)
def test_setting_out_of_range(peer: Peer, setting: int, value: int, code: int) -> None:
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((setting, value))))
    peer.expect_goaway(code)


def test_unknown_setting_ignored(peer: Peer) -> None:
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((0xFF, 12345), (0x7777, 0))))
    peer.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    sid = peer.request()
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


# -- PUSH_PROMISE (§6.6) -------------------------------------------------------------------


def test_push_promise_from_client(peer: Peer) -> None:
    sid = peer.request("/sleep?key=push&seconds=1")
    payload = struct.pack(">I", sid + 1) + peer.block(request_headers())
    peer.send(raw_frame(PUSH_PROMISE, END_HEADERS, sid, payload))
    peer.expect_goaway(PROTOCOL_ERROR)


# -- PING (§6.7) ---------------------------------------------------------------------------


def test_ping_answered_with_same_payload(peer: Peer) -> None:
    peer.send(raw_frame(PING, 0, 0, b"h2gate!!"))
    ack = peer.wait_for(lambda f: isinstance(f, PingFrame))
    assert "ACK" in ack.flags and ack.opaque_data == b"h2gate!!"


def test_ping_ack_not_answered(peer: Peer) -> None:
    peer.send(raw_frame(PING, ACK, 0, b"unasked!"))
    peer.ping(b"afterack")
    pings = [f for f in peer.frames if isinstance(f, PingFrame)]
    assert [p.opaque_data for p in pings] == [b"afterack"]


def test_ping_bad_length(peer: Peer) -> None:
    peer.send(raw_frame(PING, 0, 0, b"1234567"))
    peer.expect_goaway(FRAME_SIZE_ERROR)


def test_ping_on_stream(peer: Peer) -> None:
    peer.send(raw_frame(PING, 0, 1, b"12345678"))
    peer.expect_goaway(PROTOCOL_ERROR)


# -- GOAWAY (§6.8) -------------------------------------------------------------------------


def test_goaway_on_stream(peer: Peer) -> None:
    peer.send(raw_frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_graceful_goaway_from_the_client_lets_open_streams_finish(peer: Peer) -> None:
    # §6.8: the client's GOAWAY NO_ERROR stops new streams, not the ones it opened.
    sid = peer.request("/sleep?key=client-goaway&seconds=0.3")
    peer.send(raw_frame(GOAWAY, 0, 0, struct.pack(">II", sid, 0)))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"slept"
    peer.expect_closed()  # nothing left to serve: the server closes


# -- WINDOW_UPDATE (§6.9) ------------------------------------------------------------------


def test_window_update_zero_on_stream(peer: Peer) -> None:
    sid = peer.request("/sleep?key=wu0&seconds=0.5")
    peer.send(window_update(sid, 0))
    # §6.9: a stream error; h2gate.protocol.framecheck drops the frame hyperframe would make a connection error.
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


def test_window_update_zero_on_connection(peer: Peer) -> None:
    peer.send(window_update(0, 0))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_window_update_bad_length(peer: Peer) -> None:
    peer.send(raw_frame(0x8, 0, 0, b"\0\0\0\x01\0"))
    peer.expect_goaway(FRAME_SIZE_ERROR)


def test_window_overflow_on_stream(peer: Peer) -> None:
    sid = peer.request("/sleep?key=wu-overflow&seconds=0.5")
    peer.send(window_update(sid, 2**31 - 1))
    # §6.9.1: the stream's error (h2), or the connection's as §5.4.1 allows (libnghttp2).
    if not peer.expect_stream_error(sid, FLOW_CONTROL_ERROR):
        peer.expect_alive()


def test_window_overflow_on_connection(peer: Peer) -> None:
    peer.send(window_update(0, 2**31 - 1))
    peer.expect_goaway(FLOW_CONTROL_ERROR)
