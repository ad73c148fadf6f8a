"""``wsgi.file_wrapper``: a file streamed in chunks, its length known up front when it is a regular file."""

from __future__ import annotations

import os
import stat
from typing import Any

#: Read size the server uses for wrapped files (the app's block size if larger).
READ_SIZE = 256 * 1024


class FileWrapper:
    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = max(int(blksize), READ_SIZE)
        self.remaining: int | None = self._remaining()
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def _remaining(self) -> int | None:
        """Bytes from the current position to the end of a regular file, else None."""
        try:
            st = os.fstat(self.filelike.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            return max(0, st.st_size - self.filelike.tell())
        except (AttributeError, OSError, ValueError):
            return None

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration
