"""A connection's lifetime as one state: every phase change happens through this table.

Theory of operation. A connection is in exactly one :class:`Phase`:

* HANDSHAKE: our SETTINGS went out; the client's preface and SETTINGS have not
  arrived yet (the handshake timeout runs);
* OPEN: requests are accepted;
* DRAINING: a graceful close began. GOAWAY with the largest stream id and a
  PING went out; streams may still open until the PING's ACK shows the client
  has seen the GOAWAY (or a short deadline passes), RFC 9113 §6.8;
* CLOSING: the final GOAWAY named the last stream we serve; no new streams,
  the open ones finish;
* CLOSED: no more frames will be produced. The driver flushes what is queued,
  lingers reading (so the client gets our GOAWAY rather than a TCP reset) if
  the close was ours, then closes the transport.

:class:`Trigger` says what happened. :data:`TRANSITIONS` lists every pair;
the core (:mod:`h2gate.protocol.core`) acts on a change (which GOAWAY, which
log line) and nowhere else is the phase written. Repeating a trigger that
already took effect changes nothing, which is what makes closing idempotent:
one GOAWAY and one log line per connection, however many frames of a flood
arrive after the first broke a limit.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


class Trigger(enum.Enum):
    SETTINGS = "the client's preface and SETTINGS arrived"
    DRAIN = "a graceful close was asked for"
    DRAINED = "the drain PING was answered, or its deadline passed"
    PEER_GOAWAY = "the client sent GOAWAY without an error"
    IDLE = "the last stream ended while no new ones are taken"
    FAIL = "a connection error, or the client's GOAWAY with an error"
    LOST = "the transport broke or the client closed it"


_P, _T = Phase, Trigger

#: (phase, trigger) -> next phase, for every pair. A pair mapping to its own phase is a no-op.
TRANSITIONS: dict[tuple[Phase, Trigger], Phase] = {
    (_P.HANDSHAKE, _T.SETTINGS): _P.OPEN,
    (_P.HANDSHAKE, _T.DRAIN): _P.DRAINING,
    (_P.HANDSHAKE, _T.DRAINED): _P.HANDSHAKE,
    (_P.HANDSHAKE, _T.PEER_GOAWAY): _P.CLOSING,
    (_P.HANDSHAKE, _T.IDLE): _P.HANDSHAKE,
    (_P.OPEN, _T.SETTINGS): _P.OPEN,
    (_P.OPEN, _T.DRAIN): _P.DRAINING,
    (_P.OPEN, _T.DRAINED): _P.OPEN,
    (_P.OPEN, _T.PEER_GOAWAY): _P.CLOSING,
    (_P.OPEN, _T.IDLE): _P.OPEN,
    (_P.DRAINING, _T.SETTINGS): _P.DRAINING,
    (_P.DRAINING, _T.DRAIN): _P.DRAINING,
    (_P.DRAINING, _T.DRAINED): _P.CLOSING,
    (_P.DRAINING, _T.PEER_GOAWAY): _P.CLOSING,
    (_P.DRAINING, _T.IDLE): _P.DRAINING,
    (_P.CLOSING, _T.SETTINGS): _P.CLOSING,
    (_P.CLOSING, _T.DRAIN): _P.CLOSING,
    (_P.CLOSING, _T.DRAINED): _P.CLOSING,
    (_P.CLOSING, _T.PEER_GOAWAY): _P.CLOSING,
    (_P.CLOSING, _T.IDLE): _P.CLOSED,
    **{(phase, _T.FAIL): _P.CLOSED for phase in Phase},
    **{(phase, _T.LOST): _P.CLOSED for phase in Phase},
    **{(_P.CLOSED, trigger): _P.CLOSED for trigger in Trigger},
}


class Lifecycle:
    """The phase of one connection; :meth:`fire` is the only way it changes."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.HANDSHAKE

    def fire(self, trigger: Trigger) -> bool:
        """Apply ``trigger``; True if the phase changed (the caller then does what the change means)."""
        after = TRANSITIONS[(self.phase, trigger)]
        if after is self.phase:
            return False
        self.phase = after
        return True

    @property
    def accepting(self) -> bool:
        """New streams are served (in DRAINING too: the client may not have seen our GOAWAY yet)."""
        return self.phase in (Phase.HANDSHAKE, Phase.OPEN, Phase.DRAINING)
