"""gRPC below the frameworks: a hand-written ASGI gRPC app (lowlevel.py) against grpcio and raw frames."""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import Certs, ServerProcess
from tests.h2raw import RawH2
from tests.rpc.lowlevel import frame, unframe
from tests.rpc.test_matrix import Outbox

SERVERS = [("asyncio", "h2c"), ("asyncio", "tls"), ("trio", "h2c"), ("trio", "tls")]


@pytest.fixture(scope="module", params=SERVERS, ids=[f"{loop}/{t}" for loop, t in SERVERS])
def server(request: pytest.FixtureRequest, certs: Certs) -> Iterator[tuple[ServerProcess, str | None]]:
    """The server, and the CA file to trust for TLS (None: h2c)."""
    loop, transport = request.param
    args = ["rpc.lowlevel:app", "--loop", loop, "-b", "127.0.0.1:0"]
    ca = None
    if transport == "tls":
        args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
        ca = certs.ca_pem
    proc = ServerProcess(args)
    try:
        proc.wait_ready()
        yield proc, ca
    finally:
        code = proc.stop()
    assert code == 0, proc.output
    assert "Traceback" not in proc.output, proc.output


@pytest.fixture
def channel(server: tuple[ServerProcess, str | None]) -> Iterator[grpc.Channel]:
    proc, ca = server
    opts = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
    if ca is None:
        ch = grpc.insecure_channel(f"localhost:{proc.port}", options=opts)
    else:
        creds = grpc.ssl_channel_credentials(Path(ca).read_bytes())
        ch = grpc.secure_channel(f"localhost:{proc.port}", creds, options=opts)
    with ch:
        yield ch


def test_full_duplex_echo_of_messages_larger_than_the_windows(channel: grpc.Channel) -> None:
    """1 MiB messages (four times the stream window) in ping-pong: each reply needs the whole request read."""
    echo = channel.stream_stream("/raw.Raw/Echo")
    out = Outbox()
    payloads = [os.urandom(1 << 20) for _ in range(4)]
    out.put(payloads[0])
    call = echo(iter(out), timeout=30)
    for i, reply in enumerate(call):
        assert reply == payloads[i]
        if i + 1 < len(payloads):
            out.put(payloads[i + 1])
        else:
            out.close()
    assert call.code() == grpc.StatusCode.OK


def test_request_headers_reach_the_app(channel: grpc.Channel) -> None:
    text = channel.unary_unary("/raw.Raw/Headers")(b"", timeout=5, metadata=[("x-meta", "m")]).decode()
    headers = dict(line.split(": ", 1) for line in text.splitlines())
    assert headers["content-type"] == "application/grpc"
    assert headers["te"] == "trailers"  # grpcio says it reads trailers; HTTP/2 lets te through with that value
    assert headers["x-meta"] == "m"
    assert headers["grpc-timeout"].endswith(("m", "u", "n", "S"))


def test_trailers_only_response(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/raw.Raw/Nope")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert caught.value.details() == "no such method"  # type: ignore[attr-defined]


def test_cancelled_call_cancels_an_app_that_never_looks(channel: grpc.Channel) -> None:
    """The app neither reads nor writes: the reset still cancels its task (after the reset grace of 1 s)."""
    key = uuid.uuid4().hex.encode()
    future = channel.unary_unary("/raw.Raw/Ignore").future(key, timeout=30)
    seen = channel.unary_unary("/raw.Raw/Seen")
    deadline = time.monotonic() + 5
    while seen(key, timeout=5) != b"started" and time.monotonic() < deadline:
        time.sleep(0.02)
    future.cancel()
    deadline = time.monotonic() + 5
    while (ended := seen(key, timeout=5)) == b"started" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended in (b"CancelledError", b"Cancelled")


def test_frames_of_a_grpc_response(server: tuple[ServerProcess, str | None]) -> None:
    """HEADERS, DATA with the messages, then the status in trailer HEADERS that end the stream."""
    proc, ca = server
    with RawH2(proc.port, ca_pem=ca) as client:
        headers = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
        sid = client.request("POST", "/raw.Raw/Echo", headers=headers, body=frame(b"one") + frame(b"two"))
        stream = client.response(sid)
    assert stream.status == 200 and stream.header(b"content-type") == b"application/grpc"
    buf = bytearray(stream.body)
    assert [unframe(buf), unframe(buf)] == [b"one", b"two"]
    assert stream.trailers == [(b"grpc-status", b"0")]
    assert stream.events[-2:] == ["TrailersReceived", "StreamEnded"]
    assert struct.unpack(">BI", bytes(stream.body[:5])) == (0, 3)
