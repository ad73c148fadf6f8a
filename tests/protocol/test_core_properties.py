"""The protocol core under random frame sequences, valid and not: Hypothesis drives it, invariants checked every step.

A :class:`CoreMachine` plays a client that sends any mix of well-formed and
broken frames (bad lengths, unknown streams, floods, garbage) while an app
answers, reads or abandons the streams the core spawns and the clock moves.
After every step:

* nothing but the core's defined reactions happened: no exception escaped
  :meth:`ConnectionCore.receive` or :meth:`on_timer`;
* at most one final GOAWAY went out (a drain may announce one GOAWAY with the
  largest stream id first), and nothing after it but what closing allows;
* the DATA we sent never exceeded the windows the client gave us, and no
  stream ever reported a negative send window;
* buffered input stays under its bounds: FrameCheck holds at most the start
  of one frame, each stream at most its advertised window;
* WINDOW_UPDATE only for bytes acknowledged (consumed by the app, or dropped)
  or as an adaptive window grows within its cap: on every stream and on the
  connection, what we granted less what we acknowledged never exceeds the
  cap (the client answers our PINGs, so the windows do grow);
* a stream the core spawned ends exactly once: the core forgets it when its
  task finishes, never before, and at CLOSED every open stream is cut off.

``H2GATE_HYPOTHESIS_PROFILE=long`` runs many more examples (CI runs a bounded number).
"""

from __future__ import annotations

import importlib.util
import os
import struct

import pytest
import trio
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame, WindowUpdateFrame
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from h2gate.errors import ClientDisconnected
from h2gate.protocol.closing import MAX_STREAM_ID
from h2gate.protocol.lifecycle import Phase
from tests.conformance.frames import (
    continuation_frame,
    data_frame,
    headers_frame,
    raw_frame,
    rst_frame,
    settings_payload,
    window_update,
)
from tests.protocol.harness import Harness, goaway_bytes

settings.register_profile(
    "ci", max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long", max_examples=2000, stateful_step_count=80, deadline=None, suppress_health_check=list(HealthCheck)
)
PROFILE = os.environ.get("H2GATE_HYPOTHESIS_PROFILE", "ci")

INITIAL_WINDOW = 65_535
MAX_WINDOW, CONNECTION_WINDOW, MAX_CONNECTION_WINDOW = 262_144, 1_048_576, 2_097_152


class CountingCodec:
    """The core's codec, counting the bytes the core acknowledges on each stream."""

    def __init__(self, codec: object) -> None:
        self._codec = codec
        self.acked: dict[int, int] = {}

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.acked[stream_id] = self.acked.get(stream_id, 0) + size
        self._codec.acknowledge(stream_id, size)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._codec, name)


FIELDS = st.sampled_from(
    [
        [],
        [("content-type", "text/plain")],
        [("connection", "close")],  # malformed (RFC 9113 §8.2.2)
        [("content-length", "3")],
        [("content-length", "x")],  # malformed
        [("te", "trailers")],
        [("Upper", "case")],  # malformed
        [("priority", "u=1, i")],
    ]
)
METHODS = st.sampled_from(["GET", "POST", "HEAD", "CONNECT", "PUT"])
CODES = st.sampled_from([0, 1, 2, 5, 7, 8, 11, 0x99])


class CoreMachine(RuleBasedStateMachine):
    codec = "h2"

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(
            codec=self.codec,
            max_concurrent_streams=8,
            initial_window_size=INITIAL_WINDOW,
            max_resets_per_second=50,
            max_control_frames=64,
            max_empty_frames_per_second=50,
            max_priority_frames_per_second=50,
            max_window_updates_per_second=200,
            max_header_list_size=4096,
            max_window_size=MAX_WINDOW,
            max_connection_window_size=MAX_CONNECTION_WINDOW,
        )
        self.codec = CountingCodec(self.h.core.codec)
        self.h.core.codec = self.codec  # type: ignore[assignment]
        self.next_sid = 1
        self.windows: dict[int, int] = {}  # the client's receive windows, as it advertised them
        self.conn_window = INITIAL_WINDOW
        self.initial = INITIAL_WINDOW
        self.seen = 0  # frames of h.frames already checked
        self.sent: dict[int, int] = {}  # DATA bytes sent per stream

    @initialize(valid=st.booleans())
    def start(self, valid: bool) -> None:
        if valid:
            self.h.handshake()

    # -- the client ------------------------------------------------------------------------------

    @rule(method=METHODS, fields=FIELDS, end=st.booleans(), reuse=st.booleans())
    def open_stream(self, method: str, fields: list[tuple[str, str]], end: bool, reuse: bool) -> None:
        sid = max(1, self.next_sid - 2) if reuse else self.next_sid
        self.next_sid = max(self.next_sid, sid + 2)
        headers = [(":method", method), (":scheme", "http"), (":authority", "x"), (":path", "/p"), *fields]
        if method == "CONNECT":
            headers = [(":method", "CONNECT"), (":authority", "x:443"), *fields]
        self.windows.setdefault(sid, self.initial)
        self.h.feed(headers_frame(sid, self.h.block(headers), end_stream=end))

    @rule(size=st.integers(0, 20_000), end=st.booleans(), which=st.integers(0, 12))
    def send_data(self, size: int, end: bool, which: int) -> None:
        sid = which * 2 + 1
        self.h.feed(data_frame(sid, b"d" * size, end_stream=end))
        self.sent[sid] = self.sent.get(sid, 0) + size

    def _granted(self, sid: int) -> int:
        """What we allowed the client to send on ``sid`` (0: the connection) so far."""
        base = 65_535 if sid == 0 else INITIAL_WINDOW
        return base + sum(
            f.window_increment for f in self.h.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == sid
        )

    def _uploading(self) -> list[int]:
        return [s.stream_id for s in self._live_streams() if not s.request_ended and not s.disconnected]

    @precondition(lambda self: bool(self._uploading()))
    @rule(pick=st.integers(0, 100), size=st.integers(1, 300_000))
    def send_body(self, pick: int, size: int) -> None:
        """A well-behaved upload: as much of ``size`` as the windows we granted allow, in full frames."""
        live = self._uploading()
        sid = live[pick % len(live)]
        room = min(self._granted(sid) - self.sent.get(sid, 0), self._granted(0) - sum(self.sent.values()))
        size = min(size, room)
        while size > 0 and not self.h.core.closed:
            n = min(size, 16_384)
            self.h.feed(data_frame(sid, b"u" * n))
            self.sent[sid] = self.sent.get(sid, 0) + n
            size -= n

    @rule(which=st.integers(0, 12), code=CODES)
    def reset(self, which: int, code: int) -> None:
        self.h.feed(rst_frame(which * 2 + 1, code))

    @rule(which=st.integers(0, 12), increment=st.sampled_from([0, 1, 1000, 2**31 - 1]))
    def window(self, which: int, increment: int) -> None:
        sid = which * 2 + 1 if which else 0
        self.h.feed(window_update(sid, increment))
        if increment and sid == 0:
            self.conn_window += increment
        elif increment and sid in self.windows:
            self.windows[sid] += increment

    @rule(value=st.sampled_from([0, 1, 16_384, 65_535, 2**31]))
    def settings_window(self, value: int) -> None:
        self.h.feed(raw_frame(0x4, 0, 0, settings_payload((0x4, value))))
        if value <= 2**31 - 1:
            delta = value - self.initial
            self.initial = value
            self.windows = {sid: w + delta for sid, w in self.windows.items()}

    @rule()
    def ack_our_ping(self) -> None:
        """The client answers the last PING we sent (a flow-control one, or a drain's)."""
        ours = [f for f in self.h.frames if isinstance(f, PingFrame) and "ACK" not in f.flags]
        if ours:
            self.h.feed(self.h.ping_bytes(ours[-1].opaque_data, ack=True))

    @rule(count=st.integers(1, 150))
    def pings(self, count: int) -> None:
        self.h.feed(self.h.ping_bytes() * count)

    @rule(which=st.integers(0, 12), depends=st.integers(0, 12), length=st.sampled_from([5, 4]))
    def priority(self, which: int, depends: int, length: int) -> None:
        payload = struct.pack(">IB", depends * 2 + 1, 7)[:length]
        self.h.feed(raw_frame(0x2, 0, which * 2 + 1, payload))

    @rule(which=st.integers(0, 12), value=st.sampled_from([b"u=0", b"u=7, i", b"garbage=", b""]))
    def priority_update(self, which: int, value: bytes) -> None:
        self.h.feed(raw_frame(0x10, 0, 0, struct.pack(">I", which * 2 + 1) + value))

    @rule(code=CODES)
    def goaway(self, code: int) -> None:
        self.h.feed(goaway_bytes(0, code))

    @rule(data=st.binary(min_size=1, max_size=64))
    def garbage(self, data: bytes) -> None:
        self.h.feed(data)

    @rule(length=st.integers(16_385, 2**24 - 1), ftype=st.integers(0, 10))
    def oversized(self, length: int, ftype: int) -> None:
        self.h.feed(raw_frame(ftype, 0, 1, b"", length=length)[:9])

    @rule(count=st.integers(1, 80))
    def continuation_flood(self, count: int) -> None:
        sid = self.next_sid
        self.next_sid += 2
        frames = [headers_frame(sid, self.h.block([(":method", "GET")]), end_headers=False)]
        frames += [continuation_frame(sid, b"", end_headers=False)] * count
        self.h.feed(*frames)

    @rule(count=st.integers(1, 120))
    def empty_data_flood(self, count: int) -> None:
        self.h.feed(data_frame(1, b"") * count)

    # -- the app and the clock ---------------------------------------------------------------------------

    def _live(self) -> list[int]:
        return [s.stream_id for s in self.h.spawned if s not in self.h.finished]

    def _live_streams(self) -> list:
        return [s for s in self.h.spawned if s not in self.h.finished]

    def _unanswered(self) -> list[int]:
        return [sid for sid in self._live() if not self.h.stream(sid).headers_sent]

    @precondition(lambda self: bool(self._unanswered()))
    @rule(pick=st.integers(0, 100), body=st.integers(0, 100_000))
    def respond(self, pick: int, body: int) -> None:
        live = self._unanswered()
        try:
            self.h.respond(live[pick % len(live)], 200, b"r" * body)
        except ClientDisconnected:
            self.h.collect()  # the stream or its connection is gone: what an app sees then

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 100))
    def read_body(self, pick: int) -> None:
        live = self._live()
        stream = self.h.stream(live[pick % len(live)])

        async def read() -> None:
            with trio.move_on_after(0.01):
                await stream.read()

        try:
            trio.run(read)
        except OSError:
            pass  # ClientDisconnected: the stream was reset
        self.h.collect()

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 100))
    def app_returns(self, pick: int) -> None:
        live = self._live()
        self.h.finish(live[pick % len(live)])

    @rule(seconds=st.sampled_from([0.02, 0.1, 1.1, 2.1, 11.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.h.tick(seconds)

    @rule()
    def shutdown(self) -> None:
        self.h.core.shutdown(5.0)
        self.h.collect()

    # -- invariants --------------------------------------------------------------------------------------

    @invariant()
    def one_final_goaway(self) -> None:
        goaways = self.h.goaways()
        finals = [g for g in goaways if g.last_stream_id != MAX_STREAM_ID or g.error_code]
        assert len(finals) <= 1, [(g.last_stream_id, g.error_code) for g in goaways]
        assert len(goaways) - len(finals) <= 1
        if finals:  # after the final GOAWAY: no other GOAWAY, no new stream; after an error's, no response
            final = finals[0]
            at = self.h.frames.index(final)
            after = self.h.frames[at + 1 :]
            assert not [f for f in after if isinstance(f, GoAwayFrame)], after
            if final.error_code:
                assert not [f for f in after if isinstance(f, HeadersFrame | DataFrame)], after
            else:  # streams the GOAWAY covers may still be answered (RFC 9113 §6.8)
                known = {f.stream_id for f in self.h.frames[:at]} | set(range(1, final.last_stream_id + 1, 2))
                assert not [f for f in after if isinstance(f, HeadersFrame) and f.stream_id not in known], after

    @invariant()
    def data_within_the_clients_windows(self) -> None:
        for frame in self.h.frames[self.seen :]:
            if isinstance(frame, DataFrame):
                size = len(frame.data)
                self.conn_window -= size
                self.windows[frame.stream_id] = self.windows.get(frame.stream_id, self.initial) - size
                assert self.conn_window >= 0 and self.windows[frame.stream_id] >= 0
            elif isinstance(frame, SettingsFrame | WindowUpdateFrame):
                pass
        self.seen = len(self.h.frames)  # (a window may go negative when the client lowers SETTINGS_INITIAL_WINDOW_SIZE)

    @invariant()
    def buffers_bounded(self) -> None:
        core = self.h.core
        assert len(core.frames._held) <= 15
        for stream in core.streams.values():
            assert stream.buffered <= max(self.initial, INITIAL_WINDOW) + 16_384

    @invariant()
    def window_updates_only_for_acknowledged_bytes_or_growth(self) -> None:
        granted: dict[int, int] = {}
        for frame in self.h.frames:
            if isinstance(frame, WindowUpdateFrame):
                granted[frame.stream_id] = granted.get(frame.stream_id, 0) + frame.window_increment
        acked = self.codec.acked
        opening = CONNECTION_WINDOW - 65_535  # our preface opens the connection window to its initial size
        assert granted.get(0, 0) - opening - sum(acked.values()) <= MAX_CONNECTION_WINDOW - CONNECTION_WINDOW
        for sid, total in granted.items():
            if sid:
                assert total - acked.get(sid, 0) <= MAX_WINDOW - INITIAL_WINDOW, (sid, total, acked.get(sid))

    @invariant()
    def streams_end_exactly_once(self) -> None:
        core = self.h.core
        finished = {id(s) for s in self.h.finished}
        for stream in self.h.spawned:
            if id(stream) in finished:
                assert core.streams.get(stream.stream_id) is not stream
            else:
                assert core.streams.get(stream.stream_id) is stream
                if core.phase is Phase.CLOSED:
                    assert stream.disconnected or stream.state.done

    def teardown(self) -> None:
        for sid in self._live():
            self.h.finish(sid)
        assert not self.h.core.streams


class Ngh2CoreMachine(CoreMachine):
    """The same machine on the native codec: the invariants hold whichever codec runs."""

    codec = "ngh2"


CoreMachine.TestCase.settings = settings.get_profile(PROFILE)
Ngh2CoreMachine.TestCase.settings = settings.get_profile(PROFILE)
TestCore = CoreMachine.TestCase
TestCoreNgh2 = pytest.mark.skipif(importlib.util.find_spec("ngh2") is None, reason="ngh2 is not installed")(
    Ngh2CoreMachine.TestCase
)
