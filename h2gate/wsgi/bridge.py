"""The one way a WSGI thread reaches the trio side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from h2gate.errors import ClientDisconnected


def to_trio(afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``afn(*args)`` in the stream's trio task and wait for it (called from the app thread).

    The stream being cancelled (connection lost, server shut down) or the
    server being gone surfaces in the app as ClientDisconnected, an OSError.
    """
    try:
        return trio.from_thread.run(afn, *args)
    except trio.Cancelled:
        raise ClientDisconnected("the stream was cancelled (connection lost or server shutting down)") from None
    except trio.RunFinishedError:
        raise ClientDisconnected("the server has stopped") from None
