"""Header-block attacks: CONTINUATION floods (2024), HPACK bombs (CVE-2016-6581), many empty fields (CVE-2019-9516).

A header block is bounded on the wire before h2 buffers or decodes it (its
bytes, frame headers included, against SETTINGS_MAX_HEADER_LIST_SIZE plus a
16 KiB margin, so empty CONTINUATION frames count too) and in time
(``--header-timeout``); after decoding, HPACK's header list size (each field's
name and value plus 32 bytes, RFC 7541 §4.1) is held to
SETTINGS_MAX_HEADER_LIST_SIZE, which also bounds the number of fields (at most
1/32 of it). Every one of these ends the connection: the HPACK state would be
lost with a block left undecoded (RFC 9113 §4.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hyperframe.frame import GoAwayFrame

from tests.attacks.conftest import Target
from tests.conformance.frames import continuation_frame, headers_frame, request_headers

ENHANCE_YOUR_CALM = 0xB
LIST_SIZE = 16_384  # --max-header-list-size in these tests


def _open_block(t: Target, peer_sid: int, block: bytes) -> bytes:
    """A HEADERS frame starting a header block it does not finish."""
    return headers_frame(peer_sid, block, end_headers=False)


@pytest.mark.parametrize(
    ("fragment", "reason"),
    [
        (b"x", r"more than 64 CONTINUATION frames \(flood\)"),
        (b"", r"more than 64 CONTINUATION frames \(flood\)"),
        (b"x" * 16_000, r"header block over 32768 bytes \(CONTINUATION flood\)"),
    ],
    ids=["one-byte-fragments", "empty-fragments", "large-fragments"],
)
def test_continuation_flood(target: Callable[..., Target], fragment: bytes, reason: str) -> None:
    t = target("--max-header-list-size", str(LIST_SIZE), "--max-empty-frames-per-second", "100000")
    peer = t.peer()
    sid = peer.new_stream_id()
    peer.send(_open_block(t, sid, peer.block(request_headers())))
    peer.send(continuation_frame(sid, fragment[:1], end_headers=False))
    t.bystander_served()
    peer.send_for(continuation_frame(sid, fragment, end_headers=False) * 100, timeout=5)  # past either bound
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(rf"\[WARNING\] closing connection from 127\.0\.0\.1:\d+: {reason} \(GOAWAY ENHANCE_YOUR_CALM\)")
    t.memory_bounded()
    t.bystander_served()


def test_slow_continuation_dribble_hits_the_header_timeout(target: Callable[..., Target]) -> None:
    """A block that keeps growing, slowly and within every size limit, is still bounded in time."""
    t = target("--header-timeout", "1")
    peer = t.peer()
    sid = peer.new_stream_id()
    started = time.monotonic()
    peer.send(_open_block(t, sid, peer.block(request_headers())))
    t.bystander_served()
    goaways: list[GoAwayFrame] = []
    for _ in range(50):  # one byte every 0.1 s: never the size limit, never the empty-frame budget
        peer.send(continuation_frame(sid, b"x", end_headers=False))
        goaways += [f for f in peer.read_frames(timeout=0.1) if isinstance(f, GoAwayFrame)]
        if goaways:
            break
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
    peer.expect_closed()
    assert time.monotonic() - started < 4
    t.log(r"closing connection from 127\.0\.0\.1:\d+: header block not finished within 1s")
    t.memory_bounded()


def test_headers_without_end_headers_then_silence(target: Callable[..., Target]) -> None:
    """Slowloris on HEADERS: the header-completion timeout ends the connection."""
    t = target("--header-timeout", "0.5")
    peer = t.peer()
    sid = peer.new_stream_id()
    peer.send(_open_block(t, sid, peer.block(request_headers())))
    t.bystander_served()
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(r"header block not finished within 0\.5s \(GOAWAY ENHANCE_YOUR_CALM\)")


def test_hpack_bomb(target: Callable[..., Target]) -> None:
    """One 4 KB field in the dynamic table, then referenced a thousand times at one byte each."""
    t = target("--max-header-list-size", str(LIST_SIZE))
    peer = t.peer()
    big = ("x-bomb", "b" * 4000)
    first = peer.block([*request_headers(), big])  # indexed: now entry 62 of the dynamic table
    sid = peer.request()
    peer.expect_response(sid)
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, first))  # the first request carrying it is within the limit
    peer.expect_response(sid)
    t.bystander_served()
    bomb = peer.block(request_headers()) + bytes([0x80 | 62]) * 1000  # ~4 MB once decoded
    assert len(bomb) < 1100
    peer.send(headers_frame(peer.new_stream_id(), bomb))
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(
        r"protocol error from 127\.0\.0\.1:\d+: header list larger than SETTINGS_MAX_HEADER_LIST_SIZE "
        r"\(GOAWAY ENHANCE_YOUR_CALM\)"
    )
    t.memory_bounded()
    t.bystander_served()


def test_many_empty_header_fields(target: Callable[..., Target]) -> None:
    """Empty fields cost 32 bytes each in the header list size: their number is bounded too."""
    t = target("--max-header-list-size", str(LIST_SIZE))
    peer = t.peer()
    empties = [("x-e", "")] * (LIST_SIZE // 32 + 10)  # just over what the list size allows
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block([*request_headers(), *empties])))
    t.bystander_served()
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(r"header list larger than SETTINGS_MAX_HEADER_LIST_SIZE \(GOAWAY ENHANCE_YOUR_CALM\)")
    t.memory_bounded()
    t.bystander_served()


def test_empty_header_fields_under_the_limit_are_served(target: Callable[..., Target]) -> None:
    t = target("--max-header-list-size", str(LIST_SIZE))
    peer = t.peer()
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block([*request_headers(), *[("x-e", "")] * 100])))
    headers, body = peer.expect_response(sid)
    assert (headers[b":status"], body) == (b"200", b"hello")
