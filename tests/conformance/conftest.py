"""One cleartext and one TLS server for the whole conformance package, and a ``connect`` factory.

Every test gets ``connect(settings=None, handshake=True)``, which opens a
:class:`~tests.conformance.frames.Peer` over the test's ``transport``: ``h2c``
(prior knowledge), ``upgrade`` (HTTP/1.1 Upgrade, stream 1 already answered)
or ``tls`` (ALPN h2). Tests run on all three unless they narrow ``transport``
with ``@pytest.mark.parametrize("transport", H2C_ONLY)``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from tests.conformance.frames import TRANSPORTS, Peer
from tests.conftest import Certs, ServerProcess

#: Limits the tests rely on; the keep-alive timeout is long so idle GOAWAYs never interfere.
SERVER_FLAGS = [
    "--loop",
    "trio",
    "--no-access-log",
    "--max-concurrent-streams",
    "10",
    "--initial-window-size",
    "65535",
    "--max-frame-size",
    "16384",
    "--keep-alive-timeout",
    "60",
    "--max-resets-per-second",
    "1000",
]


def _start(certs: Certs, tls: bool) -> Iterator[ServerProcess]:
    args = ["apps.flow:app", *SERVER_FLAGS, "-b", "127.0.0.1:0"]
    if tls:
        args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
    proc = ServerProcess(args)
    try:
        yield proc.wait_ready()
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture(scope="package")
def cleartext_server(certs: Certs) -> Iterator[ServerProcess]:
    yield from _start(certs, tls=False)


@pytest.fixture(scope="package")
def tls_server(certs: Certs) -> Iterator[ServerProcess]:
    yield from _start(certs, tls=True)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connect(transport: str, request: pytest.FixtureRequest, certs: Certs) -> Iterator[Callable[..., Peer]]:
    server = request.getfixturevalue("tls_server" if transport == "tls" else "cleartext_server")
    peers: list[Peer] = []

    def open_peer(settings: dict[int, int] | None = None, handshake: bool = True) -> Peer:
        peer = Peer(transport, server.port, cafile=certs.ca_pem, settings=settings, handshake=handshake)
        peers.append(peer)
        return peer

    yield open_peer
    for peer in peers:
        peer.close()


@pytest.fixture
def peer(connect: Callable[..., Peer]) -> Peer:
    return connect()
