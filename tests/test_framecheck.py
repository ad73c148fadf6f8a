"""h2gate.framecheck: frame boundaries followed across any split of the byte stream."""

from __future__ import annotations

import struct

import pytest
from h2.errors import ErrorCodes

from h2gate.framecheck import PREFACE, FrameCheck


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


SETTINGS = frame(0x4, 0, 0, b"\0\x03\0\0\0\x64")
HEADERS_1 = frame(0x1, 0x5, 1, b"\x82\x84\x86" + b"x" * 40)
DATA_1 = frame(0x0, 0, 1, b"d" * 300)
RST_1 = frame(0x3, 0, 1, b"\0\0\0\x08")


def feed(data: bytes, step: int, *, upgraded: bool = False) -> tuple[ErrorCodes, str] | None:
    check = FrameCheck(upgraded=upgraded)
    for i in range(0, len(data), step):
        problem = check.feed(data[i : i + step])
        if problem is not None:
            return problem
    return None


@pytest.mark.parametrize("step", [1, 2, 7, 9, 10, 1000])
def test_valid_stream_passes_however_split(step: int) -> None:
    assert feed(PREFACE + SETTINGS + HEADERS_1 + DATA_1 + RST_1 + frame(0x6, 0, 0, b"p" * 8), step) is None


@pytest.mark.parametrize("step", [1, 5, 1000])
@pytest.mark.parametrize(
    ("tail", "code", "fragment"),
    [
        (frame(0x6, 0, 0, b"p" * 8), ErrorCodes.PROTOCOL_ERROR, "not followed by SETTINGS"),
        (SETTINGS + frame(0x4, 0x1, 0, b"\0" * 6), ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK"),
        (SETTINGS + HEADERS_1 + frame(0x3, 0, 3, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR, "idle stream 3"),
        (SETTINGS + frame(0x3, 0, 2, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR, "idle stream 2"),
    ],
    ids=["no-settings", "settings-ack-payload", "rst-idle", "rst-even"],
)
def test_violations(step: int, tail: bytes, code: ErrorCodes, fragment: str) -> None:
    problem = feed(PREFACE + tail, step)
    assert problem is not None and problem[0] == code and fragment in problem[1]


def test_upgraded_connection_has_stream_one() -> None:
    assert feed(PREFACE + SETTINGS + RST_1, 1000, upgraded=True) is None
    assert feed(PREFACE + SETTINGS + RST_1, 1000) is not None


def test_wrong_preface_left_to_h2() -> None:
    assert feed(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(0x6, 0, 0, b"p" * 8), 3) is None
