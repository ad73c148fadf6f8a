"""The hosted asyncio loop's queue of ready callbacks, for a ``call_soon`` without its checks' calls.

``BaseEventLoop.call_soon`` checks that the loop is open and, in debug mode,
the thread and the callback, then makes a ``Handle`` and appends it to the
loop's ``_ready`` deque: three Python calls before the handle, once for every
asyncio task a request starts. The hosted loop
(:class:`h2gate.asgi.hosted_loop.HostedLoop`) keeps the deque while it is open and
not in debug mode and appends to it itself; it drops it on ``close()`` and
``set_debug(True)``, so the checks still run whenever they could say anything.
"""

from __future__ import annotations

import asyncio
from collections import deque

from h2gate.internals.probes import ASYNCIO_READY, PROBES


def ready_queue(loop: asyncio.AbstractEventLoop) -> deque[asyncio.Handle] | None:
    """The deque ``loop.call_soon`` appends its handles to, or None when call_soon itself must be called
    (the probe failed, or the loop is closed or in debug mode)."""
    if not PROBES[ASYNCIO_READY] or loop.is_closed() or loop.get_debug():
        return None
    ready = getattr(loop, "_ready", None)
    return ready if isinstance(ready, deque) else None
