"""PING and SETTINGS floods (CVE-2019-9512, CVE-2019-9515): the replies we queue are capped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hyperframe.frame import GoAwayFrame, PingFrame

from tests.attacks.conftest import Target
from tests.conformance.frames import PING, SETTINGS, raw_frame

ENHANCE_YOUR_CALM = 0xB
FLOODS = {
    "ping": raw_frame(PING, 0, 0, b"flooding"),
    "settings": raw_frame(SETTINGS, 0, 0),
}


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_flood_from_a_client_that_does_not_read(target: Callable[..., Target], kind: str, tls: bool) -> None:
    t = target("--max-control-frames", "100", tls=tls)
    peer = t.peer(rcvbuf=4096)
    frame = FLOODS[kind]
    peer.send(frame * 50)  # under the cap: the attack starts quietly
    t.bystander_served()
    # The replies pile up (we never read) until the cap is hit; bounded at ~17 MB sent.
    for _ in range(1000):
        if not peer.send_for(frame * 1000, timeout=2):
            break
    t.log(r"\[WARNING\] closing connection from 127\.0\.0\.1:\d+: flood of control frames .*ENHANCE_YOUR_CALM")
    frames = peer.read_frames(timeout=3)  # whatever was still buffered, then the close
    peer.expect_closed()
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    # The GOAWAY is queued behind replies the client never read: it may not make it out.
    assert all(g.error_code == ENHANCE_YOUR_CALM for g in goaways), goaways
    t.memory_bounded()
    t.bystander_served()


def test_pings_from_a_client_that_reads_are_answered(target: Callable[..., Target]) -> None:
    """The cap counts unanswered replies, not PINGs: a client that reads may ping as often as it likes."""
    t = target("--max-control-frames", "100")
    peer = t.peer()
    for round_ in range(30):
        peer.send(*(PingFrame(0, opaque_data=b"round%03d" % round_) for _ in range(50)))
        for _ in range(50):
            peer.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    peer.expect_alive()
