"""The hosted loop's call_soon appends to asyncio's ready queue itself (h2gate.internals.asyncio_ready),
and still answers as asyncio's does where asyncio's checks have something to say."""

from __future__ import annotations

import pytest

from h2gate.asgi.hosted_loop import HostedLoop


def test_callbacks_run_in_order_with_their_arguments() -> None:
    loop = HostedLoop()
    try:
        seen: list[int] = []
        for i in range(3):
            loop.call_soon(seen.append, i)
        loop.run_forever()  # one turn: the hosted loop's selector ends it
        assert seen == [0, 1, 2]
    finally:
        loop.close()


def test_debug_mode_checks_the_callback() -> None:
    loop = HostedLoop()
    try:
        loop.set_debug(True)
        with pytest.raises(TypeError):
            loop.call_soon(42)  # type: ignore[arg-type]
        loop.set_debug(False)
        handle = loop.call_soon(print)
        handle.cancel()
    finally:
        loop.close()


def test_a_closed_loop_refuses_callbacks() -> None:
    loop = HostedLoop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
