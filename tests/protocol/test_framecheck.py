"""h2gate.protocol.framecheck: frame boundaries followed across any split of the byte stream."""

from __future__ import annotations

import struct

import pytest
from h2.errors import ErrorCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from h2gate.protocol.framecheck import PREFACE, FrameCheck, Piece, StreamProblem


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


SETTINGS = frame(0x4, 0, 0, b"\0\x03\0\0\0\x64")
HEADERS_1 = frame(0x1, 0x5, 1, b"\x82\x84\x86" + b"x" * 40)
DATA_1 = frame(0x0, 0, 1, b"d" * 300)
RST_1 = frame(0x3, 0, 1, b"\0\0\0\x08")
PING = frame(0x6, 0, 0, b"p" * 8)
STEPS = [1, 2, 3, 7, 9, 10, 13, 14, 15, 1000]


def run(data: bytes, step: int, *, upgraded: bool = False) -> tuple[bytes, list[StreamProblem], tuple | None]:
    """Feed ``data`` in ``step``-sized reads: (bytes passed on, stream errors, connection problem)."""
    check = FrameCheck(upgraded=upgraded)
    passed, errors = b"", list[StreamProblem]()
    for i in range(0, len(data), step):
        pieces, problem = check.feed(data[i : i + step])
        if problem is not None:
            return passed, errors, problem
        for piece in pieces:
            if isinstance(piece, StreamProblem):
                errors.append(piece)
            else:
                passed += bytes(piece)
    return passed, errors, None


def feed(data: bytes, step: int, *, upgraded: bool = False) -> tuple[ErrorCodes, str] | None:
    return run(data, step, upgraded=upgraded)[2]


@pytest.mark.parametrize("step", STEPS)
def test_valid_stream_passes_however_split(step: int) -> None:
    data = (
        PREFACE
        + SETTINGS
        + HEADERS_1
        + DATA_1
        + frame(0x2, 0, 1, struct.pack(">IB", 0, 15))  # PRIORITY, valid
        + frame(0x8, 0, 1, struct.pack(">I", 100))  # WINDOW_UPDATE, valid
        + frame(0x1, 0x25, 3, struct.pack(">IB", 1, 15) + b"\x82\x84\x86")  # HEADERS with priority
        + RST_1
        + PING
    )
    assert run(data, step) == (data, [], None)


def test_unchanged_read_passed_without_copy() -> None:
    check = FrameCheck()
    data = PREFACE + SETTINGS + HEADERS_1 + DATA_1
    pieces, problem = check.feed(data)
    assert problem is None and len(pieces) == 1 and pieces[0] is data


@pytest.mark.parametrize("step", [1, 5, 1000])
@pytest.mark.parametrize(
    ("tail", "code", "fragment"),
    [
        (PING, ErrorCodes.PROTOCOL_ERROR, "not followed by SETTINGS"),
        (SETTINGS + frame(0x4, 0x1, 0, b"\0" * 6), ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK"),
        (SETTINGS + HEADERS_1 + frame(0x3, 0, 3, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR, "idle stream 3"),
        (SETTINGS + frame(0x3, 0, 2, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR, "idle stream 2"),
    ],
    ids=["no-settings", "settings-ack-payload", "rst-idle", "rst-even"],
)
def test_violations(step: int, tail: bytes, code: ErrorCodes, fragment: str) -> None:
    problem = feed(PREFACE + tail, step)
    assert problem is not None and problem[0] == code and fragment in problem[1]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("bad", "code", "fragment"),
    [
        (frame(0x2, 0, 1, b"\0\0\0\0"), ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY of length 4"),
        (frame(0x2, 0, 1, b"z" * 300), ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY of length 300"),
        (frame(0x2, 0, 1, b""), ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY of length 0"),
        (frame(0x2, 0, 1, struct.pack(">IB", 0x80000001, 15)), ErrorCodes.PROTOCOL_ERROR, "depends on itself"),
        (frame(0x8, 0, 1, b"\0\0\0\0"), ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0"),
        (frame(0x8, 0, 1, b"\x80\0\0\0"), ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0"),  # reserved bit
    ],
    ids=["prio-short", "prio-long", "prio-empty", "prio-self", "wu-zero", "wu-zero-reserved-bit"],
)
def test_stream_errors_drop_the_frame(step: int, bad: bytes, code: ErrorCodes, fragment: str) -> None:
    before, after = PREFACE + SETTINGS + HEADERS_1, DATA_1 + PING
    passed, errors, problem = run(before + bad + after + bad, step)
    assert problem is None
    assert passed == before + after  # exactly that frame left out, however the reads fell
    assert [(e.stream_id, e.code, e.headers) for e in errors] == [(1, code, False)] * 2
    assert fragment in errors[0].reason


@pytest.mark.parametrize("step", STEPS)
def test_stream_error_in_place(step: int) -> None:
    """The error comes between the bytes before and after the dropped frame."""
    check = FrameCheck()
    bad = frame(0x8, 0, 1, b"\0\0\0\0")
    data = PREFACE + SETTINGS + HEADERS_1 + bad + DATA_1
    seen: list[Piece] = []
    for i in range(0, len(data), step):
        pieces, problem = check.feed(data[i : i + step])
        assert problem is None
        seen += pieces
    cut = next(i for i, p in enumerate(seen) if isinstance(p, StreamProblem))
    assert b"".join(bytes(p) for p in seen[:cut] if not isinstance(p, StreamProblem)) == PREFACE + SETTINGS + HEADERS_1
    assert b"".join(bytes(p) for p in seen[cut + 1 :] if not isinstance(p, StreamProblem)) == DATA_1


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("padded", [False, True])
def test_headers_depending_on_itself_rewritten(step: int, padded: bool) -> None:
    block = b"\x82\x84\x86" + b"x" * 20
    pad = bytes([3]) if padded else b""
    flags = 0x25 | (0x8 if padded else 0)
    bad = frame(0x1, flags, 3, pad + struct.pack(">IB", 0x80000003, 200) + block + b"\0" * len(pad) * 3)
    fixed = frame(0x1, flags, 3, pad + struct.pack(">IB", 0, 200) + block + b"\0" * len(pad) * 3)
    before = PREFACE + SETTINGS + HEADERS_1
    passed, errors, problem = run(before + bad + PING, step)
    assert problem is None
    assert passed == before + fixed + PING
    assert [(e.stream_id, e.code, e.headers) for e in errors] == [(3, ErrorCodes.PROTOCOL_ERROR, True)]


def test_stream_zero_left_to_h2() -> None:
    # On stream 0 a WINDOW_UPDATE of 0 is a connection error, which the codec reports itself.
    data = PREFACE + SETTINGS + frame(0x8, 0, 0, b"\0\0\0\0")
    assert run(data, 3) == (data, [], None)


def test_priority_on_stream_zero() -> None:
    # §6.3: PROTOCOL_ERROR, which libnghttp2 (ignoring every PRIORITY frame) would not say.
    for step in (1, 3, 1000):
        *_, problem = run(PREFACE + SETTINGS + frame(0x2, 0, 0, b"\0\0\0\1\x10"), step)
        assert problem == (ErrorCodes.PROTOCOL_ERROR, "PRIORITY on stream 0")


def test_upgraded_connection_has_stream_one() -> None:
    assert feed(PREFACE + SETTINGS + RST_1, 1000, upgraded=True) is None
    assert feed(PREFACE + SETTINGS + RST_1, 1000) is not None


def test_wrong_preface_left_to_h2() -> None:
    data = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + PING
    assert run(data, 3) == (data, [], None)


# -- flood accounting -----------------------------------------------------------------------------

OPEN_BLOCK = frame(0x1, 0x0, 1, b"\x82\x84\x86")  # HEADERS without END_HEADERS


def test_empty_frames_are_counted() -> None:
    check = FrameCheck()
    data = (
        PREFACE
        + SETTINGS
        + frame(0x1, 0x4, 1, b"\x82\x84\x86")  # HEADERS, END_HEADERS, no END_STREAM
        + frame(0x0, 0, 1) * 3  # empty DATA: counted
        + frame(0x0, 0x1, 1)  # empty DATA with END_STREAM: a normal way to end a body
        + frame(0x0, 0, 1, b"x")
    )
    assert check.feed(data)[1] is None and check.empty_frames == 3
    check = FrameCheck()
    data = PREFACE + SETTINGS + OPEN_BLOCK + frame(0x9, 0, 1) * 2 + frame(0x9, 0x4, 1)
    assert check.feed(data)[1] is None and check.empty_frames == 2 and not check.in_header_block


@pytest.mark.parametrize("step", [1, 9, 1000])
def test_header_block_in_progress_is_tracked(step: int) -> None:
    check = FrameCheck()
    data = PREFACE + SETTINGS + OPEN_BLOCK + frame(0x9, 0, 1, b"x")
    for i in range(0, len(data), step):
        assert check.feed(data[i : i + step])[1] is None
    assert check.in_header_block
    assert check.feed(frame(0x9, 0x4, 1, b"y"))[1] is None
    assert not check.in_header_block


@pytest.mark.parametrize(
    ("fragment", "count", "fragment_text"),
    [(b"", 65, "more than 64 CONTINUATION frames"), (b"z" * 400, 10, "header block over 1000 bytes")],
    ids=["frame-count", "bytes"],
)
def test_continuation_flood_is_a_connection_error(fragment: bytes, count: int, fragment_text: str) -> None:
    check = FrameCheck(max_header_block=1000)
    ok = PREFACE + SETTINGS + OPEN_BLOCK
    assert check.feed(ok)[1] is None
    problem = check.feed(frame(0x9, 0, 1, fragment) * count)[1]
    assert problem is not None and problem[0] == ErrorCodes.ENHANCE_YOUR_CALM and fragment_text in problem[1]


def test_finished_blocks_do_not_add_up() -> None:
    check = FrameCheck(max_header_block=1000)
    block = OPEN_BLOCK + frame(0x9, 0, 1, b"z" * 400) + frame(0x9, 0x4, 1, b"z" * 400)
    assert check.feed(PREFACE + SETTINGS + block * 5)[1] is None


_FRAMES = st.builds(
    frame,
    st.sampled_from([0x0, 0x0, 0x1, 0x1, 0x1, 0x2, 0x3, 0x4, 0x6, 0x8, 0x9, 0x10]),
    st.sampled_from([0x0, 0x1, 0x4, 0x5, 0x8, 0x20, 0x24, 0x25, 0x2D]),
    st.sampled_from([0, 1, 2, 3, 5, 7, 9, 0x80000001]),
    st.binary(max_size=40),
)


def _outcome(check: FrameCheck, reads: list[bytes]) -> tuple[list[object], object, tuple[object, ...]]:
    """Everything a FrameCheck hands on for ``reads`` (adjacent bytes joined), its first problem and its counts."""
    out: list[object] = []
    problem: object = None
    for read in reads:
        pieces, problem = check.feed(read)
        if problem is not None:
            break
        for piece in pieces:
            if isinstance(piece, StreamProblem) or not out or isinstance(out[-1], StreamProblem):
                out.append(piece if isinstance(piece, StreamProblem) else bytes(piece))
            else:
                out[-1] = bytes(out[-1]) + bytes(piece)  # type: ignore[arg-type]
    counts = (check.highest, check.empty_frames, check.priority_frames, check.window_updates, check.in_header_block)
    return ([] if problem is not None else out), problem, counts


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(_FRAMES, max_size=12), cuts=st.lists(st.integers(min_value=1), max_size=6))
def test_whole_reads_and_split_reads_are_judged_alike(frames: list[bytes], cuts: list[int]) -> None:
    """The whole-read walk (one unpack per frame) and the frame-by-frame one agree, however the bytes are split."""
    data = PREFACE + SETTINGS + b"".join(frames)
    points = sorted({cut % len(data) for cut in cuts} - {0})
    reads = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = _outcome(FrameCheck(max_header_block=60, max_frame_size=32), [PREFACE + SETTINGS, b"".join(frames)])
    bytewise = _outcome(FrameCheck(max_header_block=60, max_frame_size=32), [data[i : i + 1] for i in range(len(data))])
    split = _outcome(FrameCheck(max_header_block=60, max_frame_size=32), reads)
    assert whole == bytewise == split
