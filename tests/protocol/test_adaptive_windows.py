"""Adaptive receive windows, decided by the core without a socket: the Harness plays client and app, the clock is fake.

The client here keeps its own books the way a real one does: what it was
granted (our SETTINGS_INITIAL_WINDOW_SIZE and every WINDOW_UPDATE we sent) less
what it sent is the window it holds. Each round trip it sends what its windows
allow, the app reads it, and the ACK of our PING comes back ``rtt`` later.
"""

from __future__ import annotations

import trio
from hyperframe.frame import PingFrame, WindowUpdateFrame
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from h2gate.protocol.flowcontrol import FIRST_GAP, IDLE, PING_EXPIRY, PING_PREFIX
from tests.conformance.frames import rst_frame
from tests.protocol.harness import Harness
from tests.protocol.test_core_properties import PROFILE, CountingCodec

KIB, MIB = 1024, 1024 * 1024
FRAME = 16 * KIB
INITIAL = 256 * KIB  # the default stream window
CONNECTION = MIB  # the default connection window
CONNECTION_PREFACE_WINDOW = 65_535  # before our WINDOW_UPDATE opens the connection to CONNECTION


class Client:
    """The client's side of the books: windows granted and bytes sent, per stream and for the connection."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.sent: dict[int, int] = {}

    def granted(self, sid: int) -> int:
        base = CONNECTION_PREFACE_WINDOW if sid == 0 else self.h.config.initial_window_size
        return base + sum(
            f.window_increment for f in self.h.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == sid
        )

    def holds(self, sid: int) -> int:
        """The window the client holds on ``sid`` (0: the connection)."""
        sent = sum(self.sent.values()) if sid == 0 else self.sent.get(sid, 0)
        return self.granted(sid) - sent

    def send(self, sid: int, size: int) -> list:
        """Send ``size`` body bytes on ``sid`` in 16 KiB frames (never past the windows); the frames we answered."""
        assert size <= min(self.holds(sid), self.holds(0)), (size, self.holds(sid), self.holds(0))
        answered = []
        while size > 0:
            n = min(FRAME, size)
            answered += self.h.data(sid, b"b" * n)
            self.sent[sid] = self.sent.get(sid, 0) + n
            size -= n
        return answered

    def fill(self, sid: int, most: int = 64 * MIB) -> list:
        return self.send(sid, min(self.holds(sid), self.holds(0), most))


def flow_pings(frames: list) -> list[PingFrame]:
    return [
        f for f in frames if isinstance(f, PingFrame) and "ACK" not in f.flags and f.opaque_data.startswith(PING_PREFIX)
    ]


def read(h: Harness, sid: int) -> int:
    """The app reads everything buffered on ``sid``; returns how many bytes."""
    stream = h.stream(sid)

    async def take() -> int:
        total = 0
        while stream.buffered:
            total += len(await stream.read())
        return total

    taken = trio.run(take)
    h.collect()
    return taken


def ack(h: Harness, ping: PingFrame) -> list:
    return h.feed(h.ping_bytes(ping.opaque_data, ack=True))


def upload(h: Harness, sid: int = 1, length: int | None = None) -> None:
    extra = [("content-length", str(length))] if length is not None else None
    h.request(sid, "/upload", method="POST", end_stream=False, extra=extra)


def round_trip(h: Harness, client: Client, sid: int = 1, rtt: float = 0.05, most: int = 64 * MIB) -> list:
    """One round trip of a window-bound upload: the client sends all it may, the app reads it, the ACK returns."""
    pings = flow_pings(client.fill(sid, most))
    assert len(pings) == 1, "a PING goes out as the body flows"
    read(h, sid)
    h.now += rtt
    return ack(h, pings[0])


def opened(frames: list, sid: int) -> int:
    return sum(f.window_increment for f in frames if isinstance(f, WindowUpdateFrame) and f.stream_id == sid)


def test_a_body_held_back_by_its_windows_grows_them_within_their_caps() -> None:
    h = Harness(max_window_size=4 * MIB, max_connection_window_size=6 * MIB)
    h.handshake()
    client = Client(h)
    upload(h)
    answer = round_trip(h, client)
    # The app took the whole 256 KiB window in one round trip: the stream's window goes to four
    # times that (1 MiB); the connection's own sample (256 KiB of 1 MiB) is too small to grow it,
    # but it matches the largest stream window already.
    assert opened(answer, 1) == MIB - INITIAL
    assert client.holds(1) == MIB
    assert h.core.windows is not None and abs(h.core.windows.rtt - 0.05) < 1e-9
    sizes = []
    for _ in range(10):
        pings = flow_pings(client.fill(1))
        if not pings:  # nothing left to grow: no more PINGs go out
            break
        read(h, 1)
        h.now += 0.05
        ack(h, pings[0])
        sizes.append((client.holds(1), client.holds(0)))
    # Four times the sample (768 KiB, all the connection window left) per round trip, up to the caps.
    assert sizes == [(3 * MIB, 3 * MIB), (4 * MIB, 6 * MIB)], sizes
    read(h, 1)
    assert client.holds(1) == 4 * MIB and client.holds(0) == 6 * MIB


def test_a_body_the_app_reads_slowly_keeps_its_window() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h)
    pings = flow_pings(client.send(1, 64 * KIB))
    read(h, 1)  # a quarter of the window in a round trip: the window is not what holds the client back
    h.now += 0.05
    assert opened(ack(h, pings[0]), 1) == 0
    assert client.holds(1) == INITIAL - 64 * KIB  # h2 credits once half the window was consumed
    # Samples now space out: no PING on the next DATA, one after the gap.
    assert not flow_pings(client.send(1, FRAME))
    h.now += FIRST_GAP
    assert len(flow_pings(client.send(1, FRAME))) == 1


def test_a_declared_length_or_max_body_size_caps_the_window() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h, length=600_000)
    round_trip(h, client)  # four times the sample would be 1 MiB: the body is 600,000 bytes
    assert client.holds(1) == 600_000

    h = Harness(max_body_size=400_000)
    h.handshake()
    client = Client(h)
    upload(h)
    round_trip(h, client)
    assert client.holds(1) <= 400_000


def test_small_bodies_and_fixed_windows_are_not_tracked() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h, length=100_000)  # fits the initial window: nothing to grow
    assert not flow_pings(client.send(1, 100_000))
    assert h.core.windows is None

    h = Harness(max_window_size=0, max_connection_window_size=0)  # adaptive flow control off
    h.handshake()
    client = Client(h)
    upload(h)
    assert not flow_pings(client.fill(1))
    assert h.core.windows is None


def test_an_idle_stream_shrinks_back_and_withholds_credit_until_it_has() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h)
    round_trip(h, client)
    round_trip(h, client)
    held = client.holds(1)
    assert held > 2 * MIB
    connection = client.holds(0)
    assert h.core.deadlines.armed("windows")
    h.tick(IDLE + 0.01)  # the app took nothing for IDLE seconds: back to the initial windows
    # Nothing granted is taken back: the client still sends what it holds...
    for _ in range(held // MIB):
        client.send(1, MIB)
        read(h, 1)
    client.send(1, client.holds(1))
    read(h, 1)
    # ...but the credit of those bytes refills the windows only to their initial sizes.
    assert client.holds(1) == INITIAL
    assert client.holds(0) <= CONNECTION < connection
    assert not h.core.deadlines.armed("windows")


def test_a_new_body_starts_from_the_window_recent_ones_needed() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h)
    round_trip(h, client)
    learned = client.granted(1) - client.sent[1]
    assert learned == MIB
    h.data(1, b"", end_stream=True)
    answer = h.request(3, "/upload", method="POST", end_stream=False)
    assert opened(answer, 3) == learned - INITIAL
    assert client.holds(3) == learned


def test_no_flow_control_ping_while_draining() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h)
    h.core.drain()
    h.collect()
    assert not flow_pings(client.fill(1))


def test_an_unanswered_ping_is_given_up_and_its_late_ack_ignored() -> None:
    h = Harness()
    h.handshake()
    client = Client(h)
    upload(h)
    first = flow_pings(client.send(1, INITIAL // 2))
    assert len(first) == 1
    read(h, 1)
    h.now += PING_EXPIRY / 2
    assert not flow_pings(client.send(1, FRAME))  # still waiting for the first
    h.now += PING_EXPIRY
    second = flow_pings(client.send(1, FRAME))
    assert len(second) == 1 and second[0].opaque_data != first[0].opaque_data
    read(h, 1)
    assert opened(ack(h, first[0]), 1) == 0  # the late ACK changes nothing and closes nothing
    assert h.core.phase.name == "OPEN"


# -- by property: a well-behaved uploader, an app reading at random, PINGs answered late or never ---------------

MAX_STREAM, MAX_CONN = 1 * MIB, 2 * MIB
SMALL = 65_535


class WindowMachine(RuleBasedStateMachine):
    """Uploads within the windows we granted, reads, ACKs, idle spells and resets, in any order.

    After every step: DATA never outran the windows we granted (the codec would
    have closed the connection), WINDOW_UPDATE went out only for bytes the core
    acknowledged or as a window grew within its cap, and no stream holds more
    unread bytes than its cap.
    """

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(initial_window_size=SMALL, max_window_size=MAX_STREAM, max_connection_window_size=MAX_CONN)
        self.codec = CountingCodec(self.h.core.codec)
        self.h.core.codec = self.codec  # type: ignore[assignment]
        self.h.handshake()
        self.client = Client(self.h)
        self.next_sid = 1
        self.grew = False

    def _uploading(self) -> list[int]:
        return [
            s.stream_id
            for s in self.h.spawned
            if s not in self.h.finished and not s.request_ended and not s.disconnected
        ]

    @rule(length=st.sampled_from([None, None, 40_000, 500_000, 5 * MIB]))
    def begin_upload(self, length: int | None) -> None:
        upload(self.h, self.next_sid, length)
        self.next_sid += 2

    @precondition(lambda self: bool(self._uploading()))
    @rule(pick=st.integers(0, 10), size=st.integers(1, 3 * MIB), end=st.booleans())
    def send_body(self, pick: int, size: int, end: bool) -> None:
        live = self._uploading()
        sid = live[pick % len(live)]
        size = min(size, self.client.holds(sid), self.client.holds(0))
        stream = self.h.stream(sid)
        length = next((int(v) for n, v in stream.headers if n == b"content-length"), None)
        if length is not None:
            size = min(size, length - self.client.sent.get(sid, 0))
        self.client.send(sid, size)
        if end and (length is None or self.client.sent.get(sid, 0) == length):
            self.h.data(sid, b"", end_stream=True)

    @precondition(lambda self: bool(self._uploading()))
    @rule(pick=st.integers(0, 10))
    def window_bound_round_trip(self, pick: int) -> None:
        """The client sends all its windows allow, the app reads it all, our PING's ACK comes back."""
        self.send_body(pick, 64 * MIB, False)
        for stream in self.h.spawned:
            if stream not in self.h.finished and stream.buffered:
                read(self.h, stream.stream_id)
        self.h.now += 0.05
        self.ack_last_ping(False)

    @rule(pick=st.integers(0, 10))
    def app_reads(self, pick: int) -> None:
        live = [s for s in self.h.spawned if s not in self.h.finished and s.buffered]
        if live:
            read(self.h, live[pick % len(live)].stream_id)

    @rule(late=st.booleans())
    def ack_last_ping(self, late: bool) -> None:
        pings = flow_pings(self.h.frames)
        if pings:
            if late:
                self.h.now += 0.2
            ack(self.h, pings[-1])

    @rule(seconds=st.sampled_from([0.01, 0.05, 0.3, IDLE + 0.1, PING_EXPIRY + 0.1]))
    def time_passes(self, seconds: float) -> None:
        self.h.tick(seconds)

    @precondition(lambda self: bool(self._uploading()))
    @rule(pick=st.integers(0, 10))
    def client_resets(self, pick: int) -> None:
        live = self._uploading()
        self.h.feed(rst_frame(live[pick % len(live)], 8))

    @rule(pick=st.integers(0, 10))
    def app_returns(self, pick: int) -> None:
        live = [s for s in self.h.spawned if s not in self.h.finished]
        if live:
            self.h.finish(live[pick % len(live)].stream_id)

    @invariant()
    def window_updates_only_for_acknowledged_bytes_or_growth(self) -> None:
        assert not [g for g in self.h.goaways() if g.error_code], "a client within its windows never breaks a rule"
        acked = self.codec.acked
        opening = CONNECTION - CONNECTION_PREFACE_WINDOW
        assert (
            self.client.granted(0) - CONNECTION_PREFACE_WINDOW - opening - sum(acked.values()) <= MAX_CONN - CONNECTION
        )
        for stream in self.h.spawned:
            sid = stream.stream_id
            beyond = self.client.granted(sid) - SMALL - acked.get(sid, 0)
            assert beyond <= MAX_STREAM - SMALL, (sid, beyond)
            self.grew = self.grew or beyond > 0
            assert stream.buffered <= MAX_STREAM

    @invariant()
    def shrinking_never_starves_a_body(self) -> None:
        """Withheld credit stops at the initial size: a body the app has read up leaves the client room to send.

        h2 credits a window back once half of it was consumed, so a stream
        whose bytes were all read holds more than half its initial window
        (unless its declared length leaves less to send).
        """
        for sid in self._uploading():
            stream = self.h.stream(sid)
            if stream.buffered:
                continue
            length = next((int(v) for n, v in stream.headers if n == b"content-length"), None)
            left = SMALL if length is None else length - self.client.sent.get(sid, 0)
            assert self.client.holds(sid) >= min(SMALL // 2, left), (sid, self.client.holds(sid), left)

    def teardown(self) -> None:
        GROWTH.append(self.grew)


GROWTH: list[bool] = []
WindowMachine.TestCase.settings = settings(
    max_examples=500 if PROFILE == "long" else 50, stateful_step_count=40, deadline=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
TestWindows = WindowMachine.TestCase


def test_the_property_run_saw_windows_grow() -> None:
    """The machine above is only worth its invariants if windows grew in some of its runs."""
    if GROWTH:  # it ran first in this session (pytest keeps file order)
        assert any(GROWTH), "no run grew a window: the rules no longer reach the adaptive path"
