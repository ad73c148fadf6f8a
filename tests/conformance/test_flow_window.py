"""RFC 9113 §6.9: flow-control windows as the server applies them to its responses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance.frames import (
    INITIAL_WINDOW_SIZE,
    SETTINGS,
    DataFrame,
    Peer,
    raw_frame,
    settings_payload,
    window_update,
)

Connect = Callable[..., Peer]
H2C_AND_TLS = ["h2c", "tls"]


def _received(peer: Peer, sid: int, *, until_end: bool = False) -> tuple[int, bool]:
    """DATA bytes received on ``sid`` (flow-controlled length) and whether the stream ended.

    Without ``until_end`` it listens for half a second, long enough to catch bytes sent past the
    window; with it, it returns as soon as END_STREAM arrives.
    """
    if until_end:
        peer.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == sid and "END_STREAM" in f.flags)
    else:
        peer.read_frames(0.5)
    frames = [f for f in peer.frames if isinstance(f, DataFrame) and f.stream_id == sid]
    return sum(f.flow_controlled_length for f in frames), any("END_STREAM" in f.flags for f in frames)


def _download(peer: Peer, key: str, size: int) -> int:
    return peer.request(f"/download?key={key}&size={size}&chunk={size}")


def test_server_stops_at_initial_window_and_resumes_on_increase(connect: Connect, transport: str) -> None:
    peer = connect(settings={INITIAL_WINDOW_SIZE: 100})
    sid = _download(peer, f"iws-up-{transport}", 1000)
    assert _received(peer, sid) == (100, False)
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 1000))))
    assert _received(peer, sid, until_end=True) == (1000, True)


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_decrease_makes_window_negative(connect: Connect, transport: str) -> None:
    peer = connect(settings={INITIAL_WINDOW_SIZE: 1000})
    sid = _download(peer, f"iws-down-{transport}", 3000)
    assert _received(peer, sid) == (1000, False)
    # Window 0 -> -600: a WINDOW_UPDATE of 700 leaves room for exactly 100 more bytes.
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 400))))
    peer.send(window_update(sid, 700))
    assert _received(peer, sid) == (1100, False)
    peer.send(window_update(sid, 1900))
    assert _received(peer, sid, until_end=True) == (3000, True)


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_connection_window_limits_all_streams(connect: Connect, transport: str) -> None:
    peer = connect(settings={INITIAL_WINDOW_SIZE: 2**31 - 1})
    sid = _download(peer, f"conn-window-{transport}", 100_000)
    # The connection window stays at its initial 65,535 bytes until we send a WINDOW_UPDATE on stream 0.
    assert _received(peer, sid) == (65_535, False)
    peer.send(window_update(0, 100_000 - 65_535))
    assert _received(peer, sid, until_end=True) == (100_000, True)
