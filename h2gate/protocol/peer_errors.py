"""How a connection answers a client's protocol mistakes: RST_STREAM or GOAWAY, a log line, a budget.

A mixin of :class:`h2gate.protocol.connection.Connection`, kept apart so the protocol
loop reads as the loop: every reaction to a peer error (a stream error found
before h2 saw the frame, a connection error h2 raised, a malformed request)
lives here, and each reset we send for a client mistake is charged to the
same budget as the client's own resets (MadeYouReset, CVE-2025-8671).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import h2.exceptions
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import RstStreamFrame

from h2gate.observe import metrics
from h2gate.protocol.framecheck import StreamError

if TYPE_CHECKING:
    from h2gate.internals.h2conn import ServerH2Connection
    from h2gate.protocol.exchange import Exchange
    from h2gate.protocol.limits import ResetBudget

log = logging.getLogger("h2gate.error")
_GOAWAY_TYPE = 0x7


class PeerErrors:
    h2: ServerH2Connection
    exchanges: dict[int, Exchange]
    _bad_headers: set[int]
    _raw_out: list[bytes]
    _resets: ResetBudget
    _drain_input: bool  # we end the connection for an error: read what the client still sends before closing

    if TYPE_CHECKING:  # provided by Connection

        @property
        def peer_text(self) -> str: ...

        def wake_writer(self) -> None: ...

        def _send_goaway(self, last_stream_id: int, code: ErrorCodes, debug: bytes = b"") -> None: ...

        def _stop_reading(self) -> None: ...

        def _finish(self) -> None: ...

    def _fatal(self, code: ErrorCodes, reason: str) -> None:
        """Connection error we detected ourselves: GOAWAY with ``code``, then close."""
        log.warning("closing connection from %s: %s (GOAWAY %s)", self.peer_text, reason, code.name)
        self._drain_input = True
        self._send_goaway(self.h2.highest_inbound_stream_id, code, reason.encode()[:256])
        self._stop_reading()
        self._finish()

    def _on_stream_error(self, error: StreamError) -> None:
        """A stream error FrameCheck found (and dropped the frame of): RST_STREAM that stream."""
        stream_id = error.stream_id
        if error.headers:
            # h2 still decodes the (rewritten) HEADERS; the request or trailers are refused then.
            # Ids h2 then drops silently (a stream we reset) would linger: bound the set.
            if len(self._bad_headers) >= 256:
                self._bad_headers.clear()
            self._bad_headers.add(stream_id)
            return
        log.info(
            "stream error from %s on stream %d: %s (RST_STREAM %s)",
            self.peer_text,
            stream_id,
            error.reason,
            error.code.name,
        )
        exchange = self.exchanges.get(stream_id)
        if exchange is not None:
            exchange.reset(error.code)
            exchange.cancel_app_soon()
        else:
            metrics.recorder.stream_reset("server", error.code)
            try:
                if stream_id not in self.h2.streams:
                    # Never ask h2 about idle streams: its connection state machine would close.
                    raise h2.exceptions.StreamClosedError(stream_id)
                self.h2.reset_stream(stream_id, error.code)
            except h2.exceptions.StreamClosedError:
                # Idle or closed for h2: a raw frame leaves h2's stream state alone.
                frame = RstStreamFrame(stream_id)
                frame.error_code = error.code
                self._raw_out.append(frame.serialize())
        self.wake_writer()
        # Resets the client provokes count against the same budget as its own (MadeYouReset).
        self._count_reset()

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        """A connection error found by h2: make sure a GOAWAY with its code goes out."""
        code = ErrorCodes(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
        cause = exc.__cause__
        if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
            # An undecodable header block is COMPRESSION_ERROR (RFC 9113 §4.3); h2 says PROTOCOL_ERROR.
            code = ErrorCodes.COMPRESSION_ERROR
            self._drop_h2_goaway()
        log.info("protocol error from %s: %s (GOAWAY %s)", self.peer_text, exc, code.name)
        self._drain_input = True
        if code == ErrorCodes.COMPRESSION_ERROR or self.h2.state_machine.state != ConnectionState.CLOSED:
            # Ours replaces h2's GOAWAY; and h2 raises some errors (a bad client preface) before it queues one.
            self._send_goaway(self.h2.highest_inbound_stream_id, code, str(exc).encode()[:256])
        else:
            metrics.recorder.goaway_sent(code)  # h2's own GOAWAY goes out
        self.wake_writer()

    def _drop_h2_goaway(self) -> None:
        """Take h2's queued output minus the GOAWAY it appended last, so we can send our own."""
        data = self.h2.data_to_send()
        size = 9 + 8  # h2's GOAWAY carries no debug data
        if len(data) >= size and data[-size + 3] == _GOAWAY_TYPE:
            data = data[:-size]
        if data:
            self._raw_out.append(data)

    def _malformed(self, stream_id: int, problem: str) -> None:
        """A malformed request or trailer section: RST_STREAM PROTOCOL_ERROR (RFC 9113 §8.1.1)."""
        log.info("malformed request from %s on stream %d: %s", self.peer_text, stream_id, problem)
        exchange = self.exchanges.get(stream_id)
        if exchange is not None:
            exchange.reset(ErrorCodes.PROTOCOL_ERROR)
            exchange.cancel_app_soon()
        else:
            metrics.recorder.stream_reset("server", ErrorCodes.PROTOCOL_ERROR)
            try:
                self.h2.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.StreamClosedError:
                pass  # already closed: nothing left to reset
        # Resets the client provokes count against the same budget as its own (MadeYouReset).
        self._count_reset()

    def _count_reset(self) -> None:
        if self._resets.spend(time.monotonic()):
            self._fatal(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets per second (rapid reset)")
