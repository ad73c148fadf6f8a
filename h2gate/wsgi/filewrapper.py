"""``wsgi.file_wrapper``: iterates a file-like in blocks; over a regular file the server streams it instead.

When the app returns a FileWrapper whose file is a regular file on disk,
:mod:`h2gate.wsgi.response` does not iterate it: it takes the file's
:func:`~h2gate.protocol.filebody.file_span` and sends it through the same code path
as ASGI's pathsend (reads off the trio thread, one chunk at a time, gated by
flow control), with ``content-length`` set. Anything else (a socket, a
BytesIO) is iterated like any other app iterable.
"""

from __future__ import annotations

import io
from typing import Any

from h2gate.protocol.filebody import FileBodyError, FileSpan, file_span

#: Read size for file-likes that are iterated (the app's block size if larger).
READ_SIZE = 256 * 1024


class FileWrapper:
    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = max(int(blksize), READ_SIZE)
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def span(self) -> FileSpan | None:
        """The rest of the file from its current position when it is a regular file, else None."""
        if isinstance(self.filelike, io.TextIOBase):
            return None  # iterated, so its str chunks get the usual error
        try:
            return file_span(self.filelike)
        except FileBodyError:
            return None

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration
