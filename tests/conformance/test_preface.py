"""RFC 9113 §3.4: the connection preface."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.frames import (
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    SETTINGS,
    Peer,
    SettingsFrame,
    raw_frame,
    settings_payload,
)

Connect = Callable[..., Peer]


def test_valid_preface_server_settings_first(connect: Connect) -> None:
    peer = connect(handshake=False)
    peer.send(PREFACE + raw_frame(SETTINGS, 0, 0))
    first = peer.next_frame()
    # The server's preface is a SETTINGS frame (not an ACK), its first frame on the connection.
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
    assert peer.frames[0] is first
    peer.send(raw_frame(SETTINGS, 1, 0))
    sid = peer.request()
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"hello"


def test_invalid_preface_goaway_protocol_error(connect: Connect) -> None:
    peer = connect(handshake=False)
    peer.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + raw_frame(SETTINGS, 0, 0))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_preface_without_settings_goaway_protocol_error(connect: Connect) -> None:
    # The preface MUST be followed by a SETTINGS frame (§3.4); a PING first is a protocol error.
    peer = connect(handshake=False)
    peer.send(PREFACE + raw_frame(PING, 0, 0, b"12345678") + raw_frame(SETTINGS, 0, 0, settings_payload()))
    peer.expect_goaway(PROTOCOL_ERROR)
