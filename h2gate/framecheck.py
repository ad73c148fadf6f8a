"""Frame-level rules h2 does not enforce, checked on the client's raw bytes before h2 sees them.

Theory of operation: h2 parses and validates frames, but a few connection
errors RFC 9113 requires slip through it or get the wrong code:

* the client preface must be followed by a SETTINGS frame (§3.4); h2 takes any frame;
* a SETTINGS frame with ACK and a payload is FRAME_SIZE_ERROR (§6.5); h2 says PROTOCOL_ERROR;
* RST_STREAM on an idle stream is PROTOCOL_ERROR (§6.4); h2 ignores it once any stream was opened.

All three are decided by the 9-byte frame header alone, so :class:`FrameCheck`
only follows frame boundaries: it reads each header and skips the payload by
counting, never copying or rewriting the stream. It tracks the highest client
stream id itself (from HEADERS headers) because several frames of one read are
checked before h2 processes any of them. A wrong preface stops the checking:
h2 answers that one itself.
"""

from __future__ import annotations

from h2.errors import ErrorCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = 9
_HEADERS, _RST_STREAM, _SETTINGS = 0x1, 0x3, 0x4
_ACK = 0x1

Problem = tuple[ErrorCodes, str]


class FrameCheck:
    """Feed it every byte the client sends, in order; it names the first rule broken."""

    def __init__(self, *, upgraded: bool = False) -> None:
        self._preface = b""  # the preface read so far, while it is incomplete
        self._header = b""  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to pass over
        self._first = True
        self._active = True
        #: Highest client-initiated stream id seen; the h2c upgrade request is stream 1.
        self.highest = 1 if upgraded else 0

    def feed(self, data: bytes) -> Problem | None:
        """The (error code, reason) of the first connection error in ``data``, or None."""
        if not self._active:
            return None
        pos = 0
        if len(self._preface) < len(PREFACE):
            need = len(PREFACE) - len(self._preface)
            self._preface += data[:need]
            pos = need
            if not PREFACE.startswith(self._preface):
                self._active = False  # not HTTP/2 at all: h2 reports the bad preface
                return None
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            need = _HEADER - len(self._header)
            self._header += data[pos : pos + need]
            pos += need
            if len(self._header) < _HEADER:
                break
            header, self._header = self._header, b""
            self._skip = int.from_bytes(header[:3], "big")
            problem = self._check(self._skip, header[3], header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF)
            if problem is not None:
                self._active = False
                return problem
        return None

    def _check(self, length: int, ftype: int, flags: int, stream_id: int) -> Problem | None:
        if self._first:
            self._first = False
            if ftype != _SETTINGS:
                return ErrorCodes.PROTOCOL_ERROR, "the client preface was not followed by SETTINGS"
        if ftype == _HEADERS and stream_id % 2 and stream_id > self.highest:
            self.highest = stream_id
        elif ftype == _SETTINGS and flags & _ACK and length:
            return ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"
        elif ftype == _RST_STREAM and stream_id and (stream_id % 2 == 0 or stream_id > self.highest):
            # Even ids would be server pushes, which are disabled: those streams are always idle.
            return ErrorCodes.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}"
        return None
