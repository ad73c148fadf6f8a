"""The writer's raw socket path (h2gate.net.socket_send), the BIO-to-socket drain, Signal."""

from __future__ import annotations

import random
import socket

import pytest
import trio
import trio.testing
from OpenSSL import SSL

from h2gate.errors import SendTimeout
from h2gate.internals.openssl import direct_drain
from h2gate.net.socket_send import RawSender, raw_sender, sender, within


def run_trio(afn) -> None:  # type: ignore[no-untyped-def]
    trio.run(afn)


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


def raw_pair() -> tuple[RawSender, trio.SocketStream, trio.SocketStream]:
    """A RawSender on one end of a connected socketpair, and both ends (call inside trio.run)."""
    ours, theirs = stream_pair()
    raw = raw_sender(ours)
    assert isinstance(raw, RawSender)
    return raw, ours, theirs


def test_send_all_waits_for_a_slow_reader_and_keeps_order() -> None:
    payload = random.Random(5).randbytes(3 * 1024 * 1024 + 5)  # far more than a socketpair buffers

    async def main() -> None:
        raw, ours, theirs = raw_pair()
        got = bytearray()

        async def read_slowly() -> None:
            while len(got) < len(payload):
                got.extend(await theirs.receive_some(7000))
                if len(got) % 5 == 0:
                    await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slowly)
            await raw.send_all(payload[:1000])
            await raw.send_all(bytearray(payload[1000:2000]))
            await raw.send_all(memoryview(payload)[2000:])
        assert got == payload
        await ours.aclose()
        await theirs.aclose()

    run_trio(main)


def test_send_now_takes_what_fits_and_answers_zero_when_full() -> None:
    async def main() -> None:
        raw, ours, theirs = raw_pair()
        block = memoryview(b"y" * 1024 * 1024)
        first = raw.send_now(block)
        assert 0 < first < len(block)  # a socketpair buffers less than 1 MiB
        while raw.send_now(block):
            pass
        assert raw.send_now(block) == 0
        await ours.aclose()
        await theirs.aclose()

    run_trio(main)


def test_closed_socket_is_closed_resource_error() -> None:
    async def main() -> None:
        raw, ours, theirs = raw_pair()
        await ours.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await raw.send_all(b"late")
        with pytest.raises(trio.ClosedResourceError):
            raw.send_now(memoryview(b"late"))
        await theirs.aclose()

    run_trio(main)


def test_peer_gone_is_broken_resource_error() -> None:
    async def main() -> None:
        raw, ours, theirs = raw_pair()
        await theirs.aclose()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first send may still land in a buffer
                await raw.send_all(b"z" * 65536)
        await ours.aclose()

    run_trio(main)


def test_send_deadline_only_matters_when_the_socket_is_full() -> None:
    async def main() -> None:
        raw, ours, theirs = raw_pair()
        await raw.send_all(b"in time", trio.current_time())  # a deadline already due: no wait, no timeout
        assert await theirs.receive_some(100) == b"in time"
        start = trio.current_time()
        with pytest.raises(SendTimeout):
            await raw.send_all(b"w" * 4 * 1024 * 1024, start + 0.3)  # more than a socketpair holds
        assert trio.current_time() - start >= 0.3
        await ours.aclose()
        await theirs.aclose()

    run_trio(main)


def test_other_streams_get_their_send_all_with_a_deadline() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        assert raw_sender(ours) is None
        send = sender(ours)
        await send(b"no deadline", float("inf"))
        assert await theirs.receive_some(100) == b"no deadline"
        blocked, _ = trio.testing.lockstep_stream_pair()  # a send waits until the peer reads
        with pytest.raises(SendTimeout):
            await within(blocked.send_all)(b"never read", trio.current_time() + 0.2)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_direct_drain_needs_a_raw_socket_and_the_bio() -> None:
    ctx = SSL.Context(SSL.TLS_METHOD)
    conn = SSL.Connection(ctx, None)  # memory BIOs
    assert direct_drain(conn, None) is None
    left, right = socket.socketpair()
    try:
        raw = RawSender(trio.socket.from_stdlib_socket(left))
        assert direct_drain(conn, raw) is not None
        with_socket_bio = SSL.Connection(ctx, right)  # OpenSSL owns the socket: no memory BIO to drain
        assert direct_drain(with_socket_bio, raw) is None
    finally:
        left.close()
        right.close()


def test_signal_callbacks_run_once_in_order_those_ahead_first() -> None:
    """Exchange.send_data_nowait queues writer-room waiters on Connection.drained this way."""
    from h2gate.protocol.signal import Signal

    signal, calls = Signal(), []
    for name, ahead in (("a", False), ("b", True), ("c", False), ("d", True)):
        signal.then(lambda name=name: calls.append(name), ahead=ahead)
    signal.fire()
    assert calls == ["b", "d", "a", "c"]
    signal.fire()
    assert calls == ["b", "d", "a", "c"]  # each callback runs once
    signal.then(lambda: calls.append("e"), ahead=True)
    signal.then(lambda: calls.append("f"))
    signal.fire()
    assert calls[4:] == ["e", "f"]
