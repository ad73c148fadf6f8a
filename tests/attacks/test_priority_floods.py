"""PRIORITY, PRIORITY_UPDATE and WINDOW_UPDATE floods: each costs the codec work, so each has a per-second budget.

Before the budgets, 300,000 PRIORITY frames or 500,000 one-byte WINDOW_UPDATEs
on one connection held the event loop for seconds. FrameCheck counts them from
their headers before the codec parses the read, so the flood is refused for
the cost of reading it: GOAWAY ENHANCE_YOUR_CALM, one WARNING line. The delay
a bystander sees meanwhile is measured by bench/floods.py (bench/README.md,
"Floods"), not asserted here.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import pytest
from hyperframe.frame import DataFrame

from tests.attacks.conftest import Target
from tests.conformance.frames import PRIORITY, WINDOW_UPDATE, raw_frame

PRIORITY_UPDATE = 0x10
ENHANCE_YOUR_CALM = 0xB
#: Each flood stays under what the server reads and discards after its GOAWAY (4 MB, h2gate.protocol.driver),
#: so the GOAWAY reaches this client rather than a TCP reset for unread bytes.
FLOODS = {
    "priority": (raw_frame(PRIORITY, 0, 1, struct.pack(">IB", 3, 15)), 200_000, "PRIORITY"),
    "priority_update": (raw_frame(PRIORITY_UPDATE, 0, 0, struct.pack(">I", 1) + b"u=1"), 200_000, "PRIORITY"),
    "window_update": (raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)), 200_000, "WINDOW_UPDATE"),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_flood_is_refused_with_one_goaway(target: Callable[..., Target], kind: str) -> None:
    t = target()
    frame, count, word = FLOODS[kind]
    peer = t.peer()
    batch = frame * 10_000
    for _ in range(count // 10_000):
        if not peer.send_for(batch, timeout=2):
            break
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(rf"\[WARNING\] closing connection from 127\.0\.0\.1:\d+: flood of {word}")
    assert len(re.findall(r"flood of", t.server.output)) == 1
    t.bystander_served()
    t.memory_bounded()


def test_window_updates_of_a_fast_download_are_not_a_flood(target: Callable[..., Target]) -> None:
    """A client that sends a WINDOW_UPDATE for every DATA frame it reads stays within the budget."""
    t = target("--max-window-updates-per-second", "10")
    peer = t.peer()
    sid = peer.request("/download?key=wu&size=3000000")
    received = 0
    while received < 3_000_000:
        frame = peer.next_frame()
        if frame.stream_id == sid and isinstance(frame, DataFrame):
            received += len(frame.data)
            if frame.data:
                peer.send(
                    raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(frame.data)))
                    + raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(frame.data)))
                )
            if "END_STREAM" in frame.flags:
                break
    assert received == 3_000_000
    peer.expect_alive()
