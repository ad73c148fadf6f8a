"""Reset floods: Rapid Reset (CVE-2023-44487), plain reset floods (CVE-2019-9514), MadeYouReset (CVE-2025-8671)."""

from __future__ import annotations

from collections.abc import Callable

from tests.attacks.conftest import Target
from tests.conformance.frames import CANCEL, headers_frame, request_headers, rst_frame

ENHANCE_YOUR_CALM = 0xB
BUDGET = 40  # --max-resets-per-second in these tests


def test_rapid_reset_cancels_apps_and_ends_in_goaway(target: Callable[..., Target]) -> None:
    t = target("--max-resets-per-second", str(BUDGET), "--max-concurrent-streams", "10")
    peer = t.peer()
    # Apps that are running (sleeping 30 s) when their streams are reset do not live on:
    # each gets http.disconnect at once and is cancelled within the reset grace (1 s).
    sids = [peer.request(f"/sleep?key=rapid-{i}&seconds=30") for i in range(5)]
    for i in range(5):
        t.log(rf"flow-app: rapid-{i} sleeping")
    peer.send(*(rst_frame(sid, CANCEL) for sid in sids))
    for i in range(5):
        t.log(rf"flow-app: rapid-{i} cancelled", timeout=5)
    t.bystander_served()
    peer.expect_alive()  # a few resets: tolerated
    burst = b""
    for i in range(BUDGET * 3):
        sid = peer.new_stream_id()
        path = f"/sleep?key=rapid-more-{i}&seconds=30"
        burst += headers_frame(sid, peer.block(request_headers(path))) + rst_frame(sid, CANCEL)
    peer.send(burst)
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(r"closing connection from 127\.0\.0\.1:\d+: too many stream resets per second .*ENHANCE_YOUR_CALM")
    t.memory_bounded()
    t.bystander_served()


def test_made_you_reset_counts_against_the_same_budget(target: Callable[..., Target]) -> None:
    """Malformed requests cost the server an RST_STREAM each: they spend the client's reset budget."""
    t = target("--max-resets-per-second", str(BUDGET))
    peer = t.peer()
    bad = [("X-Upper", "case")]  # an uppercase field name: malformed (RFC 9113 §8.2.1)
    peer.send(*(headers_frame(peer.new_stream_id(), peer.block(request_headers(extra=bad))) for _ in range(10)))
    t.bystander_served()
    peer.expect_alive()
    peer.send(*(headers_frame(peer.new_stream_id(), peer.block(request_headers(extra=bad))) for _ in range(BUDGET)))
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(r"stream \d+ from 127\.0\.0\.1:\d+: malformed request")
    t.log(r"too many stream resets per second \(rapid reset\) \(GOAWAY ENHANCE_YOUR_CALM\)")
    t.memory_bounded()
    t.bystander_served()
