"""Frame-level rules h2 does not enforce, checked on the client's raw bytes before h2 sees them.

Theory of operation: h2 parses and validates frames, but some errors RFC 9113
requires slip through it, get the wrong code, or end the whole connection where
the RFC asks for a stream error only.

Connection errors (the caller sends GOAWAY; nothing of that read reaches h2):

* the client preface must be followed by a SETTINGS frame (§3.4); h2 takes any frame;
* a SETTINGS frame with ACK and a payload is FRAME_SIZE_ERROR (§6.5); h2 says PROTOCOL_ERROR;
* RST_STREAM on an idle stream is PROTOCOL_ERROR (§6.4); h2 ignores it once any stream was opened;
* a frame longer than our SETTINGS_MAX_FRAME_SIZE is FRAME_SIZE_ERROR (§4.2), refused when its 9-byte
  header arrives: h2 would first buffer the whole declared length (up to 16 MiB);
* PRIORITY on stream 0 is PROTOCOL_ERROR (§6.3): libnghttp2, told RFC 7540 priorities are off, ignores it;
* PRIORITY_UPDATE (RFC 9218 §7.1) not on stream 0, shorter than 4 bytes or naming stream 0
  (PROTOCOL_ERROR, FRAME_SIZE_ERROR): libnghttp2 lets the last one through.

Stream errors, which h2 (or hyperframe, while parsing) would make connection
errors. The frame is *dropped* from the bytes h2 sees and a :class:`StreamProblem`
takes its place in the output, so the caller resets just that stream:

* PRIORITY on a stream with a length other than 5: FRAME_SIZE_ERROR (§6.3);
* PRIORITY on a stream depending on itself: PROTOCOL_ERROR (§5.3.1);
* WINDOW_UPDATE on a stream with a zero increment: PROTOCOL_ERROR (§6.9).

A HEADERS frame depending on its own stream (§5.3.1) cannot be dropped: its
header block must be decoded to keep HPACK in sync. Its dependency field is
rewritten to 0 (a copy of the first few bytes of that frame only) and a
:class:`StreamProblem` with ``headers=True`` is output *before* it, so the caller
can refuse the request (or trailers) once h2 has decoded it.

Everything is decided by the 9-byte frame header plus at most 6 payload bytes.
:meth:`FrameCheck.feed` follows frame boundaries and passes payloads over by
counting. The usual read (DATA frames, and HEADERS frames that carry a whole
header block and no priority field) is walked with one ``struct`` unpack per
frame header, no slice and no call, and handed on as it is: such frames need
only their counts (bench/README.md, "Round four: the byte path"). From the
first frame that needs more (another type, a header split across reads, the
rest of a payload begun in an earlier read, the first frame after the
preface) the general walk takes the rest of the read. The read itself is
passed on (no copy) unless a frame is dropped or rewritten, in which case
memoryview slices around it are. The start of a frame split across reads is
held back (at most 15 bytes) until it can be judged, so a frame is never
half-passed to h2 before it turns out to need dropping. It tracks the
highest client stream id itself (from HEADERS headers) because several
frames of one read are checked before h2 processes any of them. A wrong
preface stops the checking: h2 answers that one itself.

Floods, seen from the same frame headers (the connection enforces the limits):

* a header block (HEADERS plus its CONTINUATIONs) is counted in wire bytes,
  frame headers included, so neither big nor empty fragments can grow it past
  ``max_header_block`` and to :data:`MAX_CONTINUATIONS` frames (the
  CONTINUATION flood): ENHANCE_YOUR_CALM before h2 buffers it;
  :attr:`FrameCheck.in_header_block` lets the connection time it;
* empty DATA frames without END_STREAM and empty HEADERS/CONTINUATION
  fragments without END_HEADERS add to :attr:`FrameCheck.empty_frames`,
  which the connection charges to a per-second budget (CVE-2019-9518);
* PRIORITY and PRIORITY_UPDATE frames add to :attr:`FrameCheck.priority_frames`
  and WINDOW_UPDATEs to :attr:`FrameCheck.window_updates`, charged the same
  way: each costs the codec work, and a flood of them would hold the loop
  for seconds before anything else ran. Counted here, before the codec sees
  the read, the whole flood is refused for the cost of reading its headers.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from h2gate.errors import ErrorCode

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = 9
_HEAD = struct.Struct(">LBL")  # (length << 8 | type), flags, stream id (its reserved bit included)
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x2, 0x3, 0x4, 0x8, 0x9
_PRIORITY_UPDATE = 0x10
_ACK = _END_STREAM = 0x1
_END_HEADERS = 0x4
_PADDED, _PRIORITY_FLAG = 0x8, 0x20

Problem = tuple[ErrorCode, str]
#: CONTINUATION frames one header block may have: h2's own cap (its CONTINUATION_BACKLOG), which it
#: answers with PROTOCOL_ERROR; checked here first so a flood gets ENHANCE_YOUR_CALM however it is paced.
MAX_CONTINUATIONS = 64


class StreamProblem(NamedTuple):
    """A stream error found ahead of h2: the caller resets ``stream_id`` with ``code``."""

    stream_id: int
    code: ErrorCode
    reason: str
    #: A HEADERS frame, passed on (rewritten) right after this: refuse the stream once h2 decoded it.
    headers: bool = False


Piece = bytes | bytearray | memoryview | StreamProblem


class FrameCheck:
    """Feed it every byte the client sends, in order; it returns what h2 should see."""

    __slots__ = (
        "_active", "_block", "_continuations", "_drop", "_first", "_held", "_preface", "_skip", "empty_frames",
        "highest", "max_frame_size", "max_header_block", "priority_frames", "window_updates",
    )  # fmt: skip

    def __init__(self, *, upgraded: bool = False, max_header_block: int = 2**31, max_frame_size: int = 16_384) -> None:
        self._preface = b""  # the preface read so far, while it is incomplete
        self._held = bytearray()  # the start of a frame split across reads, not yet passed on
        self._skip = 0  # payload bytes of the current frame still to pass over
        self._drop = False  # whether those bytes are dropped rather than passed on
        self._first = True
        self._active = True
        #: Highest client-initiated stream id seen; the h2c upgrade request is stream 1.
        self.highest = 1 if upgraded else 0
        self.max_header_block = max_header_block
        self._block: int | None = None  # wire bytes of the header block in progress
        self._continuations = 0  # CONTINUATION frames of that block
        self.max_frame_size = max_frame_size
        #: Frames counted for the flood budgets since the connection last took the counts (see the docstring).
        self.empty_frames = 0
        self.priority_frames = 0
        self.window_updates = 0

    @property
    def in_header_block(self) -> bool:
        """A HEADERS frame arrived whose block is not finished yet (no END_HEADERS so far)."""
        return self._block is not None

    def feed(self, data: bytes | bytearray) -> tuple[list[Piece], Problem | None]:
        """The pieces to hand on in order (bytes for h2, stream errors), and the first connection error.

        On a connection error the pieces are to be ignored. Without anything
        dropped, rewritten or held back the only piece is ``data`` itself.
        """
        if not self._active:
            return [data], None
        if self._skip or self._held or self._first or len(self._preface) < len(PREFACE):
            return self._feed(data, 0)
        # The usual read: whole frames of the kinds that need counting only (DATA, and HEADERS with
        # END_HEADERS and no priority block), each judged from one unpack of its header, passed on
        # as they are. The first frame that needs more is judged, from there on, by _feed.
        pos, end = 0, len(data)
        unpack, max_frame = _HEAD.unpack_from, self.max_frame_size
        while end - pos >= _HEADER:
            length_type, flags, stream_id = unpack(data, pos)
            length = length_type >> 8
            if length > max_frame:
                break
            ftype = length_type & 0xFF
            if ftype == _DATA:
                if not length and not flags & _END_STREAM:
                    self.empty_frames += 1
            elif (
                ftype == _HEADERS
                and flags & (_END_HEADERS | _PRIORITY_FLAG) == _END_HEADERS
                and _HEADER + length <= self.max_header_block
            ):
                self._block = None  # a whole header block in one frame (what _count makes of it)
                self._continuations = 0
                stream_id &= 0x7FFFFFFF
                if stream_id % 2 and stream_id > self.highest:
                    self.highest = stream_id
            else:
                break
            pos += _HEADER + length
        else:
            if pos >= end:
                if pos > end:  # the last frame's payload goes on in the next read
                    self._skip, self._drop = pos - end, False
                return [data], None
        return self._feed(data, pos)

    def _feed(self, data: bytes | bytearray, pos: int) -> tuple[list[Piece], Problem | None]:
        """:meth:`feed` frame by frame from ``pos``, where a frame starts (or the read does)."""
        out: list[Piece] = []
        if len(self._preface) < len(PREFACE):
            need = len(PREFACE) - len(self._preface)
            self._preface += data[:need]
            pos = min(need, len(data))
            if not PREFACE.startswith(self._preface):
                self._active = False  # not HTTP/2 at all: h2 reports the bad preface
                return [data], None
        end = len(data)
        run = 0  # start of the bytes of ``data`` passed on as they are, not yet put in ``out``

        def flush(stop: int) -> None:
            if run == 0 and stop == end:
                out.append(data)
            elif stop > run:
                out.append(memoryview(data)[run:stop])

        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                if self._drop:
                    flush(pos)
                    run = pos + step
                pos += step
                continue
            if self._held:  # only at the start of a read: finish the frame start held back
                want = self._want(self._held) if len(self._held) >= _HEADER else _HEADER
                take = want - len(self._held)
                self._held += data[pos : pos + take]
                pos = run = min(pos + take, end)
                if len(self._held) < want:
                    break
                if want == _HEADER and self._want(self._held) > _HEADER:
                    continue  # the header asks for some payload bytes as well
                head, self._held = bytes(self._held), bytearray()
                replacement: list[Piece] = []
                problem = self._judge(head, replacement)
                if problem is not None:
                    return out, problem
                out.extend(replacement if replacement or self._drop else [head])
                continue
            # A frame starts at ``pos``: judge it in place when its start is all here.
            want = self._want(data[pos : pos + _HEADER]) if end - pos >= _HEADER else _HEADER
            if end - pos < want:
                flush(pos)
                self._held += data[pos:]
                pos = run = end
                break
            replacement = []
            problem = self._judge(data[pos : pos + want], replacement)
            if problem is not None:
                return out, problem
            if replacement or self._drop:
                flush(pos)
                out.extend(replacement)
                run = pos + want
            pos += want
        flush(pos)
        return out, None

    @staticmethod
    def _want(head: bytes | bytearray) -> int:
        """How many bytes of a frame are needed to judge it, given at least its header."""
        length, ftype, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        if ftype == _PRIORITY_UPDATE and length >= 4:
            return _HEADER + 4  # the prioritized stream id
        if not stream_id:
            return _HEADER
        if ftype == _PRIORITY and length == 5:
            return _HEADER + 4
        if ftype == _WINDOW_UPDATE and length == 4:
            return _HEADER + 4
        if ftype == _HEADERS and flags & _PRIORITY_FLAG:
            need = 5 if flags & _PADDED else 4
            if length >= need:
                return _HEADER + need
        return _HEADER

    def _judge(self, head: bytes | bytearray, out: list[Piece]) -> Problem | None:
        """Check one frame from its start ``head``; set the skip, put any replacement in ``out``."""
        length, ftype, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        self._skip = length - (len(head) - _HEADER)
        self._drop = False
        if length > self.max_frame_size:
            return ErrorCode.FRAME_SIZE_ERROR, f"a frame of {length} bytes, over SETTINGS_MAX_FRAME_SIZE"
        if self._first:
            self._first = False
            if ftype != _SETTINGS:
                return ErrorCode.PROTOCOL_ERROR, "the client preface was not followed by SETTINGS"
        if ftype in (_DATA, _HEADERS, _CONTINUATION):
            problem = self._count(length, ftype, flags)
            if problem is not None:
                return problem
        if ftype == _HEADERS:
            if stream_id % 2 and stream_id > self.highest:
                self.highest = stream_id
            if len(head) > _HEADER:
                at = len(head) - 4
                if int.from_bytes(head[at:], "big") & 0x7FFFFFFF == stream_id:
                    out.append(StreamProblem(stream_id, ErrorCode.PROTOCOL_ERROR, "HEADERS depends on itself", True))
                    out.append(head[:at] + b"\0\0\0\0")  # depend on stream 0 instead; h2 decodes the block
                    return None
        elif ftype == _SETTINGS and flags & _ACK and length:
            return ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"
        elif ftype == _RST_STREAM and stream_id and (stream_id % 2 == 0 or stream_id > self.highest):
            # Even ids would be server pushes, which are disabled: those streams are always idle.
            return ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}"
        elif ftype == _WINDOW_UPDATE:
            self.window_updates += 1
            if stream_id and length == 4 and not int.from_bytes(head[_HEADER:], "big") & 0x7FFFFFFF:
                self._stream_error(out, stream_id, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        elif ftype == _PRIORITY_UPDATE:
            self.priority_frames += 1
            return self._priority_update(head, length, stream_id)
        elif ftype == _PRIORITY and not stream_id:
            return ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0"  # §6.3; libnghttp2 ignores every PRIORITY
        elif ftype == _PRIORITY:
            self.priority_frames += 1
            if length != 5:
                self._stream_error(out, stream_id, ErrorCode.FRAME_SIZE_ERROR, f"PRIORITY of length {length}")
            elif int.from_bytes(head[_HEADER:], "big") & 0x7FFFFFFF == stream_id:
                self._stream_error(out, stream_id, ErrorCode.PROTOCOL_ERROR, "PRIORITY depends on itself")
        return None

    @staticmethod
    def _priority_update(head: bytes | bytearray, length: int, stream_id: int) -> Problem | None:
        """RFC 9218 §7.1: PRIORITY_UPDATE is sent on stream 0, names a stream, and is at least 4 bytes long."""
        if stream_id:
            return ErrorCode.PROTOCOL_ERROR, f"PRIORITY_UPDATE on stream {stream_id}"
        if length < 4:
            return ErrorCode.FRAME_SIZE_ERROR, f"PRIORITY_UPDATE of length {length}"
        if not int.from_bytes(head[_HEADER : _HEADER + 4], "big") & 0x7FFFFFFF:
            return ErrorCode.PROTOCOL_ERROR, "PRIORITY_UPDATE for stream 0"
        return None

    def _count(self, length: int, ftype: int, flags: int) -> Problem | None:
        """Flood accounting: empty frames, and the size of the header block in progress."""
        if ftype == _DATA:
            if not length and not flags & _END_STREAM:
                self.empty_frames += 1
            return None
        if not length and not flags & _END_HEADERS:
            self.empty_frames += 1
        if ftype == _HEADERS:
            self._block = self._continuations = 0
        elif self._block is None:
            return None  # CONTINUATION out of place: h2 answers PROTOCOL_ERROR
        else:
            self._continuations += 1
            if self._continuations > MAX_CONTINUATIONS:
                return ErrorCode.ENHANCE_YOUR_CALM, f"more than {MAX_CONTINUATIONS} CONTINUATION frames (flood)"
        self._block += _HEADER + length
        if self._block > self.max_header_block:
            return ErrorCode.ENHANCE_YOUR_CALM, f"header block over {self.max_header_block} bytes (CONTINUATION flood)"
        if flags & _END_HEADERS:
            self._block = None
        return None

    def _stream_error(self, out: list[Piece], stream_id: int, code: ErrorCode, reason: str) -> None:
        """Drop the frame: ``out`` gets the error in its place."""
        out.append(StreamProblem(stream_id, code, reason))
        self._drop = True
