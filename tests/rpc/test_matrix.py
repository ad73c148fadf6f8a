"""The gRPC matrix: a real grpcio client against connectrpc services on h2gate.

Every case runs on ASGI asyncio, ASGI trio and WSGI, over h2c and TLS (the
``target`` fixture; servers are shared by the module, see conftest.py).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from tests.rpc.conftest import COMBOS, Target
from tests.rpc.relay import PING, Relay

#: How a handler's end reads (Seen) when its client went away, by where it was: waiting (its task is
#: cancelled: ASGI), reading the next request (connectrpc's request stream raises CANCELED on ASGI's
#: http.disconnect; wsgi.input raises ClientDisconnected), or between replies (the server closes the
#: response generator: GeneratorExit). Never "finished", never still "started".
GONE = {
    "asgi-asyncio": {"CancelledError", "ConnectError:CANCELED", "GeneratorExit"},
    "asgi-trio": {"Cancelled", "ConnectError:CANCELED", "GeneratorExit"},
    "wsgi": {"ClientDisconnected", "GeneratorExit"},
}


def kind(target: Target) -> str:
    return target.combo.split("/")[0]


@pytest.fixture
def channel(target: Target) -> Iterator[grpc.Channel]:
    with target.channel() as ch:
        yield ch


@pytest.fixture
def probe(channel: grpc.Channel, pb: Any) -> Any:
    return pb.ProbeStub(channel)


class Outbox:
    """A request iterator fed one message at a time: the client sends only what the test put in."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()

    def put(self, msg: Any) -> None:
        self.q.put(msg)

    def close(self) -> None:
        self.q.put(None)

    def __iter__(self) -> Iterator[Any]:
        while (msg := self.q.get()) is not None:
            yield msg


def wait_seen(probe: Any, pb: Any, key: str, timeout: float = 10) -> str:
    """What the handler noted under ``key`` once it is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe.Seen(pb.Msg(key=key), timeout=10).text
        if seen not in ("", "started") or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


# -- the four call shapes --------------------------------------------------------------------


def test_unary(probe: Any, pb: Any) -> None:
    reply, call = probe.Unary.with_call(pb.Msg(text="echo", seq=7, payload=b"hi"), timeout=10)
    assert (reply.text, reply.seq, reply.payload) == ("echo", 7, b"hi")
    assert call.code() == grpc.StatusCode.OK
    assert ("x-request-encoding", "identity") in call.initial_metadata()


def test_server_stream_arrives_incrementally(probe: Any, pb: Any) -> None:
    arrivals = []
    for i, reply in enumerate(probe.ServerStream(pb.Msg(count=5, delay_ms=300), timeout=20)):
        arrivals.append(time.monotonic())
        assert reply.seq == i
    assert len(arrivals) == 5
    # The handler spaces its replies 0.3 s apart: a server holding them back would deliver them together.
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) > 0.15, gaps


def test_client_stream(probe: Any, pb: Any) -> None:
    reply = probe.ClientStream(iter([pb.Msg(text=t, payload=b"x" * 1000) for t in "abcde"]), timeout=10)
    assert (reply.text, reply.count, reply.seq) == ("a,b,c,d,e", 5, 5000)


def test_bidi_ping_pong_is_full_duplex(probe: Any, pb: Any) -> None:
    """The next request goes out only once the previous reply has come back: a half-duplex server deadlocks."""
    out = Outbox()
    out.put(pb.Msg(seq=0, text="ping"))
    call = probe.Bidi(iter(out), timeout=20)
    got = []
    for reply in call:
        got.append(reply.seq)
        if reply.seq == 9:
            out.close()
        else:
            out.put(pb.Msg(seq=reply.seq + 1, text="ping"))
    assert got == list(range(10))
    assert call.code() == grpc.StatusCode.OK


def test_parallel_bidi_streams_on_one_channel(probe: Any, pb: Any) -> None:
    """24 bidi streams open at once on one channel (one connection), each answered in turn, three rounds."""
    outs = [Outbox() for _ in range(24)]
    calls = [probe.Bidi(iter(out), timeout=30) for out in outs]
    for round_ in range(3):
        for i, out in enumerate(outs):
            out.put(pb.Msg(seq=round_, text=f"stream {i}"))
        for i, call in enumerate(calls):
            reply = next(call)
            assert (reply.seq, reply.text) == (round_, f"stream {i}")
    for out in outs:
        out.close()
    for call in calls:
        assert list(call) == []
        assert call.code() == grpc.StatusCode.OK


# -- status, metadata, deadlines, cancellation ----------------------------------------------------


def test_error_status_with_details(probe: Any, pb: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        probe.Unary(pb.Msg(text="error"), timeout=10)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "the probe failed on purpose"
    status = rpc_status.from_call(error)
    assert status is not None and status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    detail = pb.Msg()
    assert status.details[0].Unpack(detail) and detail.text == "why: testing"


def test_metadata_in_headers_and_trailers(probe: Any, pb: Any) -> None:
    reply, call = probe.Unary.with_call(pb.Msg(text="metadata"), metadata=[("x-asked", "asked")], timeout=10)
    assert reply.text == "asked"
    assert ("x-head", "in headers") in call.initial_metadata()
    trailing = call.trailing_metadata()
    assert ("x-tail", "in trailers") in trailing
    assert ("x-tail-bin", b"\x00\x01\x02") in trailing


def test_bad_trailer_resets_the_stream(target: Target, probe: Any, pb: Any) -> None:
    """A trailer field the server cannot send is the app's mistake: RST_STREAM INTERNAL_ERROR, one log line."""
    with pytest.raises(grpc.RpcError) as caught:
        probe.Unary(pb.Msg(text="bad-trailer"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert probe.Unary(pb.Msg(text="echo"), timeout=10).text == "echo"  # the channel is fine
    target.server.wait_for_log(r"POST /h2gate.probe.v1.Probe/Unary: .*'bad name'")


def test_grpc_timeout_reaches_the_handler(probe: Any, pb: Any) -> None:
    remaining = int(probe.Unary(pb.Msg(text="deadline"), timeout=5).text)
    assert 0 < remaining <= 5100  # grpcio rounds the header up to a coarse unit: a few ms over at most


def test_deadline_exceeded(target: Target, probe: Any, pb: Any) -> None:
    key = uuid.uuid4().hex
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        probe.Unary(pb.Msg(text="sleep", delay_ms=3000, key=key), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2.5
    seen = wait_seen(probe, pb, key)
    if kind(target) == "wsgi":
        assert seen == "finished"  # a thread cannot be interrupted: its reply finds the stream gone, quietly
    else:
        assert seen in GONE[kind(target)] | {"TimeoutError", "ConnectError"}, seen
    assert probe.Unary(pb.Msg(text="echo"), timeout=10).text == "echo"


def test_client_cancellation_cancels_the_handler(target: Target, probe: Any, pb: Any) -> None:
    key = uuid.uuid4().hex
    out = Outbox()
    out.put(pb.Msg(seq=0, key=key))
    call = probe.Bidi(iter(out), timeout=30)
    assert next(call).seq == 0
    call.cancel()  # RST_STREAM CANCEL
    assert call.code() == grpc.StatusCode.CANCELLED
    assert wait_seen(probe, pb, key) in GONE[kind(target)]
    assert probe.Unary(pb.Msg(text="echo"), timeout=10).text == "echo"  # the same channel still works


def test_server_stream_cancelled_by_the_client(target: Target, probe: Any, pb: Any) -> None:
    key = uuid.uuid4().hex
    call = probe.ServerStream(pb.Msg(count=1000, delay_ms=50, key=key), timeout=30)
    assert next(call).seq == 0
    call.cancel()
    assert wait_seen(probe, pb, key) in GONE[kind(target)]
    assert probe.Unary(pb.Msg(text="echo"), timeout=10).text == "echo"


# -- load, size, compression -----------------------------------------------------------------------


def test_200_concurrent_unary_calls(probe: Any, pb: Any) -> None:
    futures = [probe.Unary.future(pb.Msg(text="echo", seq=i), timeout=60) for i in range(200)]
    assert [f.result().seq for f in futures] == list(range(200))


def test_4_mib_messages(probe: Any, pb: Any) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    assert probe.Unary(pb.Msg(text="echo", payload=payload), timeout=30).payload == payload
    # Both ways at once on one stream: each 4 MiB message is echoed while the next is on its way.
    replies = probe.Bidi(iter([pb.Msg(seq=i, payload=payload) for i in range(3)]), timeout=60)
    assert [(r.seq, r.payload == payload) for r in replies] == [(0, True), (1, True), (2, True)]


def test_gzip_messages(probe: Any, pb: Any) -> None:
    payload = b"compressible " * 50_000
    reply, call = probe.Unary.with_call(
        pb.Msg(text="echo", payload=payload), compression=grpc.Compression.Gzip, timeout=10
    )
    assert reply.payload == payload
    assert ("x-request-encoding", "gzip") in call.initial_metadata()  # the request message came compressed
    replies = list(probe.ServerStream(pb.Msg(count=3, payload=payload), compression=grpc.Compression.Gzip))
    assert [r.payload == payload for r in replies] == [True] * 3


# -- the connection ------------------------------------------------------------------------------


def test_connection_lost_mid_stream(target: Target, probe: Any, pb: Any) -> None:
    relay = Relay(target.port)
    key = uuid.uuid4().hex
    try:
        with target.channel(relay.port) as via_relay:
            out = Outbox()
            out.put(pb.Msg(seq=0, key=key))
            call = pb.ProbeStub(via_relay).Bidi(iter(out), timeout=30)
            assert next(call).seq == 0
            relay.sever()
            with pytest.raises(grpc.RpcError) as caught:
                next(call)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            out.close()
    finally:
        relay.close()
    assert wait_seen(probe, pb, key) in GONE[kind(target)]
    assert probe.Unary(pb.Msg(text="echo"), timeout=10).text == "echo"


@pytest.mark.timeout(90)
def test_keepalive_pings_on_a_20s_stream(targets: dict[str, Target], pb: Any) -> None:
    """grpcio pinging every second (also between calls) never trips the control-frame limits.

    All six combinations run at once, so the case costs 20 s, not two minutes.
    Each channel goes through a relay, which counts the client's PINGs on h2c.
    """
    options = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # else grpcio stops after two PINGs with no DATA sent
    ]
    results: dict[str, object] = {}
    relays = {combo: Relay(targets[combo].port, count_frames=combo.endswith("h2c")) for combo in COMBOS}

    def run(combo: str) -> None:
        try:
            with targets[combo].channel(relays[combo].port, options) as ch:
                stub = pb.ProbeStub(ch)
                got = [r.seq for r in stub.ServerStream(pb.Msg(count=6, delay_ms=4000), timeout=40)]
                time.sleep(1.5)  # idle, between calls: pings go on (permit_without_calls)
                echo = stub.Unary(pb.Msg(text="echo"), timeout=10).text
                results[combo] = (got, echo)
        except Exception as exc:
            results[combo] = exc

    threads = [threading.Thread(target=run, args=(combo,)) for combo in COMBOS]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(80)
    finally:
        for relay in relays.values():
            relay.close()
    assert results == {combo: ([0, 1, 2, 3, 4, 5], "echo") for combo in COMBOS}
    for combo in COMBOS:
        if combo.endswith("h2c"):
            assert relays[combo].frames[PING] >= 10, (combo, relays[combo].frames)
        output = targets[combo].server.output
        assert "ENHANCE_YOUR_CALM" not in output and "flood" not in output, output
