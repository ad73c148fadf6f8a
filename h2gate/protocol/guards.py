"""The attack limits of one connection: budgets, counters and the size of request bodies.

:class:`Guards` belongs to one :class:`~h2gate.protocol.core.ConnectionCore`
and owns every counter below; it only answers (a problem in words, or None),
the core acts on the answer (RST_STREAM, GOAWAY, a log line). Each limit is a
``Config`` option; docs/security.md lists them with the reaction chosen:

* empty-frame flood (CVE-2019-9518), PRIORITY/PRIORITY_UPDATE floods and
  WINDOW_UPDATE floods: counted by :class:`~h2gate.protocol.framecheck.FrameCheck`
  before the codec sees a read, charged here to per-second budgets: GOAWAY
  ENHANCE_YOUR_CALM. WINDOW_UPDATEs earn headroom from the DATA we send;
* PING and SETTINGS answered while our replies wait for the writer (the
  client does not read them): GOAWAY ENHANCE_YOUR_CALM;
* resets: the client's own and those its mistakes make us send (refused and
  malformed streams) share one budget, which stops Rapid Reset
  (CVE-2023-44487) and MadeYouReset (CVE-2025-8671) alike;
* ``max_body_size``: a declared content-length over it gets 413 before the
  app runs; a body that grows past it mid-stream gets RST_STREAM CANCEL;
* a content-length that disagrees with the DATA is a malformed request
  (RFC 9113 §8.1.1): RST_STREAM PROTOCOL_ERROR.

Slowness (header blocks, idle bodies, stalled windows) is timed by the core's
deadlines; none of those resets count against the reset budget.
"""

from __future__ import annotations

from h2gate.config import Config
from h2gate.protocol.framecheck import FrameCheck
from h2gate.protocol.limits import BodyLengths, BodySizes, EarnedBudget, RateBudget, ResetBudget

#: Room a header block gets on the wire beyond SETTINGS_MAX_HEADER_LIST_SIZE (HPACK rarely inflates; frame headers).
HEADER_BLOCK_MARGIN = 16_384
#: Stream ids whose HEADERS depended on themselves, kept until the codec decodes them (bounded).
MAX_BAD_HEADERS = 256
#: Every connection's ``bad_headers`` until its first: shared, so only ever read or discarded from, never added to.
_NONE: set[int] = set()


class Guards:
    """The budgets and counters of one connection (see the module docstring)."""

    __slots__ = (
        "_control", "_empty", "_priority", "_resets", "_window_updates", "bad_headers", "body_lengths",
        "body_sizes", "max_control",
    )  # fmt: skip

    def __init__(self, config: Config) -> None:
        self._resets = ResetBudget(config.max_resets_per_second)
        self._empty = RateBudget(config.max_empty_frames_per_second)
        self._priority = RateBudget(config.max_priority_frames_per_second)
        self._window_updates = EarnedBudget(config.max_window_updates_per_second)
        self.max_control = config.max_control_frames
        self._control = 0  # PING/SETTINGS replies queued since the writer last took the output
        self.body_sizes = BodySizes(config.max_body_size)
        self.body_lengths = BodyLengths()
        #: Streams whose HEADERS depended on themselves (FrameCheck): refused once decoded.
        self.bad_headers: set[int] = _NONE  # a set of its own from the first one on (most connections have none)

    def frames_read(self, check: FrameCheck, now: float) -> str | None:
        """Charge the frames FrameCheck counted in the last read; the flood in words if a budget broke."""
        problem = None
        if check.empty_frames:
            if self._empty.spend(now, check.empty_frames):
                problem = "flood of empty frames"
            check.empty_frames = 0
        if check.priority_frames:
            if self._priority.spend(now, check.priority_frames):
                problem = "flood of PRIORITY / PRIORITY_UPDATE frames"
            check.priority_frames = 0
        if check.window_updates:
            if self._window_updates.spend(now, check.window_updates):
                problem = "flood of WINDOW_UPDATE frames"
            check.window_updates = 0
        return problem

    def data_sent(self, now: float, frames: int) -> None:
        """We queued ``frames`` DATA frames: the client may answer each with two WINDOW_UPDATEs."""
        self._window_updates.earn(now, 2 * frames)

    def control_reply(self) -> bool:
        """A PING or SETTINGS we answer; True once too many replies wait for the writer (a flood)."""
        self._control += 1
        return self._control > self.max_control

    def flushed(self) -> None:
        """The writer took everything queued: the replies are on their way."""
        self._control = 0

    def reset(self, now: float) -> bool:
        """One reset, the client's or one it provoked; True once over the per-second budget."""
        return self._resets.spend(now)

    def header_depends_on_itself(self, stream_id: int) -> None:
        if self.bad_headers is _NONE:
            self.bad_headers = set()
        elif len(self.bad_headers) >= MAX_BAD_HEADERS:
            self.bad_headers.clear()  # ids the codec drops silently (a stream we reset) would linger
        self.bad_headers.add(stream_id)

    @property
    def holding(self) -> bool:
        """Some rate budget remembers recent events (dropped by :meth:`trim` once they are a second old)."""
        return self._resets.holding or self._empty.holding or self._priority.holding or self._window_updates.holding

    def trim(self, now: float) -> None:
        """Drop what has aged out of every rate budget: an idle connection keeps none of its busy second."""
        for budget in (self._resets, self._empty, self._priority, self._window_updates):
            budget.trim(now)

    def forget(self, stream_id: int) -> None:
        if self.bad_headers:
            self.bad_headers.discard(stream_id)
        self.body_lengths.forget(stream_id)
        self.body_sizes.forget(stream_id)
