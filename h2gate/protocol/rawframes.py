"""The few frames a codec writes or edits as bytes, outside its HTTP/2 state machine (RFC 9113 §4.1, §6).

A codec whose session is over (a connection error) still owes the client the
core's GOAWAY; a reset for a stream the state machine no longer knows still
goes out; and :class:`~h2gate.protocol.ngh2codec.Ngh2Codec` edits one value of
its own first SETTINGS frame and takes back a GOAWAY libnghttp2 queued on its
own. Frames are walked by their 9-byte headers only.
"""

from __future__ import annotations

import struct

_HEAD = struct.Struct(">HBBBL")  # 24-bit length (16 + 8 bits), type, flags, stream id
_SETTING = struct.Struct(">HL")
_WALK = struct.Struct(">LBL")  # (length << 8 | type), flags, stream id: one unpack per frame header
_SETTINGS, _PING, _GOAWAY, _RST_STREAM = 0x4, 0x6, 0x7, 0x3
_ACK = 0x1


def _frame(kind: int, stream_id: int, payload: bytes) -> bytes:
    size = len(payload)
    return _HEAD.pack(size >> 8, size & 0xFF, kind, 0, stream_id) + payload


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return _frame(_RST_STREAM, stream_id, code.to_bytes(4, "big"))


def end_stream_frame(stream_id: int) -> bytes:
    """An empty DATA frame with END_STREAM."""
    return _HEAD.pack(0, 0, 0x0, 0x1, stream_id)


def without_frame(data: bytes, kind: int, stream_id: int) -> bytes:
    """``data`` without its frames of type ``kind`` on ``stream_id`` (a codec's own, taken back)."""
    cut = [(pos, int.from_bytes(data[pos : pos + 3], "big")) for pos, k, _ in _frames(data) if k == kind]
    cut = [(pos, size) for pos, size in cut if int.from_bytes(data[pos + 5 : pos + 9], "big") == stream_id]
    for pos, size in reversed(cut):
        data = data[:pos] + data[pos + 9 + size :]
    return data


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return _frame(_GOAWAY, 0, struct.pack(">LL", last_stream_id, code) + debug)


def ping_frame(data: bytes) -> bytes:
    return _frame(_PING, 0, data)


def _frames(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, flags) of each frame that starts in ``data``."""
    out, pos, end = [], 0, len(data)
    while pos + 9 <= end:
        length = int.from_bytes(data[pos : pos + 3], "big")
        out.append((pos, data[pos + 3], data[pos + 4]))
        pos += 9 + length
    return out


def set_setting(data: bytes, setting: int, value: int) -> bytes:
    """``data`` with ``setting`` set to ``value`` in its first SETTINGS frame (unchanged if it has none)."""
    for pos, kind, flags in _frames(data):
        if kind != _SETTINGS or flags & _ACK:
            continue
        length = int.from_bytes(data[pos : pos + 3], "big")
        edited = bytearray(data)
        for at in range(pos + 9, pos + 9 + length - 5, 6):
            if _SETTING.unpack_from(data, at)[0] == setting:
                _SETTING.pack_into(edited, at, setting, value)
        return bytes(edited)
    return data


def without_last_goaway(data: bytes) -> bytes:
    """``data`` without its last frame if that is a GOAWAY (a codec's own, taken back)."""
    frames = _frames(data)
    if frames and frames[-1][1] == _GOAWAY:
        return data[: frames[-1][0]]
    return data


class FrameWalker:
    """Follows frame boundaries across reads, by the 9-byte headers alone (payloads are skipped by count).

    Fed every byte a codec receives, in order (the client preface first, skipped); reports the
    header of each frame as ``(offset, type, flags, stream id)``, the offset within that read (0
    for a header that began in an earlier read).
    """

    __slots__ = ("_head", "_skip")

    def __init__(self, skip: int = 0) -> None:
        self._skip = skip  # bytes before the next frame header: the preface, then each payload
        self._head = bytearray()  # a frame header split across reads

    def heads(self, data: bytes | bytearray | memoryview) -> list[tuple[int, int, int, int]]:
        out: list[tuple[int, int, int, int]] = []
        end = len(data)
        pos = self._skip
        if self._head:
            pos = 9 - len(self._head)
            self._head += data[:pos]
            if len(self._head) < 9:
                return out
            head, self._head = bytes(self._head), bytearray()
            out.append((0, head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF))
            pos += int.from_bytes(head[:3], "big")
        unpack = _WALK.unpack_from
        while pos + 9 <= end:
            length_type, flags, stream_id = unpack(data, pos)
            out.append((pos, length_type & 0xFF, flags, stream_id & 0x7FFFFFFF))
            pos += 9 + (length_type >> 8)
        if pos < end:
            self._head += data[pos:]
            self._skip = 0
        else:
            self._skip = pos - end
        return out
