"""Unit tests for h2gate.protocol.filebody, the file-body path behind pathsend, zerocopysend and wsgi.file_wrapper."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import trio

from h2gate.protocol.filebody import FileBodyError, FileSpan, file_span, stream_file


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 100)  # 25600 bytes
    return path


def collect(span: FileSpan, chunk: int = 1000) -> list[tuple[bytes, bool]]:
    writes: list[tuple[bytes, bool]] = []

    async def write(piece: bytes, last: bool) -> None:
        writes.append((piece, last))

    trio.run(stream_file, span, write, chunk)
    return writes


def test_span_defaults_to_the_rest_from_the_file_position(data: Path) -> None:
    with data.open("rb") as fh:
        fh.read(100)  # buffered: the fd's own position is further on, tell() is right
        span = file_span(fh)
        assert (span.offset, span.count) == (100, 25_500)
        writes = collect(span)
    assert b"".join(p for p, _ in writes) == data.read_bytes()[100:]
    assert [last for _, last in writes] == [False] * (len(writes) - 1) + [True]
    assert max(len(p) for p, _ in writes) <= 1000  # one chunk at a time


def test_span_offset_and_count(data: Path) -> None:
    with data.open("rb") as fh:
        span = file_span(fh, 10, 20)
        assert b"".join(p for p, _ in collect(span)) == data.read_bytes()[10:30]
        assert fh.tell() == 0  # pread leaves the position alone


def test_empty_span_writes_once(data: Path) -> None:
    with data.open("rb") as fh:
        assert collect(file_span(fh, 25_600)) == [(b"", True)]


@pytest.mark.parametrize(
    ("offset", "count", "message"),
    [(0, 25_601, "runs past the end"), (-1, None, "offset must be"), (0, True, "count must be"), ("1", 2, "offset")],
)
def test_bad_ranges(data: Path, offset: object, count: object, message: str) -> None:
    with data.open("rb") as fh, pytest.raises(FileBodyError, match=message):
        file_span(fh, offset, count)  # type: ignore[arg-type]


def test_not_a_regular_file() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(FileBodyError, match="not a regular file"):
            file_span(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(FileBodyError, match="no usable file descriptor"):
        file_span(io.BytesIO(b"x"))


def test_file_that_shrank(data: Path) -> None:
    with data.open("rb") as fh:
        span = file_span(fh)
        os.truncate(data, 5000)
        with pytest.raises(FileBodyError, match="ended 20600 bytes short"):
            collect(span)
