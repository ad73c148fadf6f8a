"""File bodies streamed from disk: the one path behind ASGI pathsend / zerocopysend and WSGI's file_wrapper.

Theory of operation: a body is a :class:`FileSpan` (a descriptor, an offset
and a byte count, checked against the file's size up front so a
``content-length`` can be set). :func:`stream_file` reads it one chunk at a
time with ``os.pread`` in a worker thread (disk reads never block the trio
loop, and the file position is left alone) and hands each chunk to a
``write`` callback that returns only once the chunk is within the client's
flow-control windows. So at most one chunk per stream is in memory, and a
client that stops reading stops the reads too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

#: Bytes read from disk at a time (one DATA frame's worth of the default 64 KiB window).
CHUNK = 64 * 1024


class FileBodyError(ValueError):
    """The file cannot serve as a body (not a regular file, bad offset/count, shrank while sent)."""


@dataclass(frozen=True, slots=True)
class FileSpan:
    fd: int
    offset: int
    count: int


def _fileno(file: Any) -> int:
    if isinstance(file, int) and not isinstance(file, bool):
        return file
    try:
        return int(file.fileno())
    except (AttributeError, OSError, ValueError, TypeError) as exc:
        raise FileBodyError(f"{file!r} has no usable file descriptor ({exc})") from None


def file_span(file: Any, offset: int | None = None, count: int | None = None) -> FileSpan:
    """The span of a regular file to send: from ``offset`` (default: the current position), ``count``
    bytes (default: to the end). Raises FileBodyError for anything else.
    """
    fd = _fileno(file)
    for name, value in (("offset", offset), ("count", count)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise FileBodyError(f"{name} must be a non-negative int, not {value!r}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileBodyError("is not a regular file")
        if offset is None:
            tell = getattr(file, "tell", None)  # a buffered file object knows its position better than lseek
            offset = int(tell()) if tell is not None else os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        raise FileBodyError(f"cannot be read: {exc}") from None
    available = max(0, st.st_size - offset)
    if count is None:
        count = available
    elif count > available:
        raise FileBodyError(f"count {count} runs past the end of the file ({available} bytes left at {offset})")
    return FileSpan(fd, offset, count)


async def stream_file(span: FileSpan, write: Callable[[bytes, bool], Awaitable[None]], chunk: int = CHUNK) -> None:
    """Call ``write(data, last)`` for each chunk of ``span``; ``last`` is True exactly once (with b"" when empty).

    Raises FileBodyError when the file ends early (it shrank since the span was taken) and
    OSError when a read fails; nothing more is written then.
    """
    if span.count == 0:
        await write(b"", True)
        return
    position, left = span.offset, span.count
    while left > 0:
        data = await trio.to_thread.run_sync(os.pread, span.fd, min(chunk, left), position)
        if not data:
            raise FileBodyError(f"the file ended {left} bytes short of the {span.count} to send")
        position += len(data)
        left -= len(data)
        await write(data, left == 0)
