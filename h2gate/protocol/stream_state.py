"""A stream's state, as h2gate tracks it: every transition happens in this module.

Theory of operation. A request/response exchange has two sides that move
independently: the client's request (its body may still be arriving) and our
response. Each side has a small state and :data:`TRANSITIONS` lists every move
either side can make; :meth:`StreamState.apply` is the only code that changes
them. A move the table does not list is a bug in h2gate or an adapter (data
before headers, a second final HEADERS, anything after END_STREAM) and raises
:class:`~h2gate.errors.StreamStateError`. Moves that cannot matter any more
(a reset after the response ended) are listed as staying put, so the table
reads as the whole truth.

A side that is ``GONE`` was cut off: the client reset the stream, we did, or
the connection went away. An app that reads or sends on a gone side gets
:class:`~h2gate.errors.ClientDisconnected` (the stream object checks that
before asking the table). The exchange is *done* when both sides are ENDED or
GONE; :class:`h2gate.protocol.stream.Stream` reports that once.
"""

from __future__ import annotations

import enum

from h2gate.errors import StreamStateError


class Side(enum.Enum):
    """One direction of the exchange."""

    REQUEST = "request"
    RESPONSE = "response"


class State(enum.Enum):
    OPEN = "open"  # request: the body may still come
    IDLE = "idle"  # response: nothing final sent yet (1xx blocks may have gone out)
    HEADERS = "headers"  # response: the final HEADERS went out, the body may follow
    ENDED = "ended"  # END_STREAM seen (request) or sent (response)
    GONE = "gone"  # reset by either side, or the connection is gone


class Move(enum.Enum):
    # the client's side
    RECV_END = "the client's END_STREAM"
    # our side
    SEND_INFORMATIONAL = "a 1xx HEADERS block"
    SEND_HEADERS = "the response HEADERS"
    SEND_HEADERS_END = "the response HEADERS with END_STREAM"
    SEND_DATA = "response DATA"
    SEND_END = "the response's END_STREAM"
    SEND_TRAILERS = "the response trailers"
    # either side
    RESET = "RST_STREAM (sent or received)"
    LOST = "the connection's end"


_CUT = (Move.RESET, Move.LOST)

#: (side, state, move) -> next state. Nothing else is allowed.
TRANSITIONS: dict[tuple[Side, State, Move], State] = {
    (Side.REQUEST, State.OPEN, Move.RECV_END): State.ENDED,
    (Side.REQUEST, State.GONE, Move.RECV_END): State.GONE,  # it crossed our reset on the wire
    **{(Side.REQUEST, State.OPEN, move): State.GONE for move in _CUT},
    # A request whose body was complete is still cut off: its app must not read on.
    **{(Side.REQUEST, State.ENDED, move): State.GONE for move in _CUT},
    **{(Side.REQUEST, State.GONE, move): State.GONE for move in _CUT},
    (Side.RESPONSE, State.IDLE, Move.SEND_INFORMATIONAL): State.IDLE,
    (Side.RESPONSE, State.IDLE, Move.SEND_HEADERS): State.HEADERS,
    (Side.RESPONSE, State.IDLE, Move.SEND_HEADERS_END): State.ENDED,
    (Side.RESPONSE, State.HEADERS, Move.SEND_DATA): State.HEADERS,
    (Side.RESPONSE, State.HEADERS, Move.SEND_END): State.ENDED,
    (Side.RESPONSE, State.HEADERS, Move.SEND_TRAILERS): State.ENDED,
    **{(Side.RESPONSE, State.IDLE, move): State.GONE for move in _CUT},
    **{(Side.RESPONSE, State.HEADERS, move): State.GONE for move in _CUT},
    # A complete response stays complete: a later reset only stops the upload.
    **{(Side.RESPONSE, State.ENDED, move): State.ENDED for move in _CUT},
    **{(Side.RESPONSE, State.GONE, move): State.GONE for move in _CUT},
}

_SIDE_OF = {Move.RECV_END: Side.REQUEST}
#: TRANSITIONS keyed by the members' names: an Enum member's hash is a Python-level call, and
#: apply()/check() run several times per request; a tuple of str hashes in C. Derived, never edited.
_BY_NAME: dict[tuple[str, str, str], State] = {
    (side.name, state.name, move.name): after for (side, state, move), after in TRANSITIONS.items()
}
_REQUEST_MOVES = frozenset(move.name for move in _SIDE_OF)
_CUT_NAMES = frozenset(move.name for move in _CUT)
_FINAL = (State.ENDED, State.GONE)


class StreamState:
    """Both sides of one stream; :meth:`apply` is the only way either changes."""

    __slots__ = ("request", "response")

    def __init__(self, *, request_ended: bool = False) -> None:
        self.request = State.ENDED if request_ended else State.OPEN
        self.response = State.IDLE

    def check(self, move: Move) -> None:
        """Raise StreamStateError unless ``move`` is allowed now (checked before bytes are queued for it)."""
        name = move._name_
        if name in _REQUEST_MOVES:
            if ("REQUEST", self.request._name_, name) not in _BY_NAME:
                raise self._refused(Side.REQUEST, self.request, move)
        elif ("RESPONSE", self.response._name_, name) not in _BY_NAME:
            raise self._refused(Side.RESPONSE, self.response, move)

    def apply(self, move: Move) -> None:
        """Make ``move``; RESET and LOST cut both sides. Raises StreamStateError for a forbidden one."""
        name = move._name_
        if name in _CUT_NAMES:
            self.request = _BY_NAME[("REQUEST", self.request._name_, name)]
            self.response = _BY_NAME[("RESPONSE", self.response._name_, name)]
        elif name in _REQUEST_MOVES:
            after = _BY_NAME.get(("REQUEST", self.request._name_, name))
            if after is None:
                raise self._refused(Side.REQUEST, self.request, move)
            self.request = after
        else:
            after = _BY_NAME.get(("RESPONSE", self.response._name_, name))
            if after is None:
                raise self._refused(Side.RESPONSE, self.response, move)
            self.response = after

    @staticmethod
    def _refused(side: Side, current: State, move: Move) -> StreamStateError:
        return StreamStateError(f"{move.value} is not allowed when the {side.value} is {current.value}")

    @property
    def done(self) -> bool:
        """Both sides are over: nothing more will be read or sent."""
        return self.request in _FINAL and self.response in _FINAL

    @property
    def cut(self) -> bool:
        """A reset or the connection's end cut either side off."""
        return self.request is State.GONE or self.response is State.GONE
