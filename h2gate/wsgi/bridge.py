"""The one way a WSGI thread reaches the trio side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from h2gate.errors import ClientDisconnected
from h2gate.wsgi.pool import CANCELLED, STOPPED, current_job


def to_trio(afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``afn(*args)`` in the stream's trio task and wait for it (called from the app thread).

    The stream being cancelled (connection lost, server shut down) or the
    server being gone surfaces in the app as ClientDisconnected, an OSError.
    A pool thread hands the call to the task waiting for its job
    (:mod:`h2gate.wsgi.pool`); any other trio worker thread uses
    ``trio.from_thread.run``.
    """
    job = current_job()
    if job is not None:
        return job.call(afn, args)
    try:
        return trio.from_thread.run(afn, *args)
    except trio.Cancelled:
        raise ClientDisconnected(CANCELLED) from None
    except trio.RunFinishedError:
        raise ClientDisconnected(STOPPED) from None


def to_trio_behind(afn: Callable[..., Awaitable[Any]], *args: Any, size: int) -> None:
    """Like :func:`to_trio` for ``size`` body bytes, without waiting for them to be taken.

    A pool thread goes on with the app (see :meth:`h2gate.wsgi.pool.Job.call_behind`);
    a failure is raised by its next call. Other threads wait as with to_trio.
    """
    job = current_job()
    if job is not None:
        job.call_behind(afn, args, size)
    else:
        to_trio(afn, *args)
