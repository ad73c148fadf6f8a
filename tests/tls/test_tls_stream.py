"""TLSStream against a real TLS client: the stdlib ``ssl`` module in trio.SSLStream.

Two different TLS stacks on either end (OpenSSL via pyOpenSSL here, OpenSSL
via ``ssl`` there) check the wire behaviour, not just self-consistency.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from OpenSSL import SSL

from h2gate.tls.context import build_server_context
from h2gate.tls.stream import TLSStream

pytestmark = pytest.mark.filterwarnings("error")

Pair = tuple[TLSStream, trio.SSLStream[trio.abc.Stream]]


def run(afn: Callable[[], Awaitable[object]], **kwargs: object) -> None:
    """Run one async test body under trio (no pytest-trio needed)."""
    trio.run(afn, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def rsa_ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.RSA)


def server_context(ca: trustme.CA, tmp_path: Path, key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> SSL.Context:
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=key_type)
    pem = tmp_path / f"server-{key_type.name}.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    return build_server_context(str(pem), None, None)


def client_context(ca: trustme.CA, alpn: Sequence[str] | None = ("h2",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


async def connect(
    server_ctx: SSL.Context,
    client_ctx: ssl.SSLContext,
    *,
    hostname: str = "localhost",
    pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] | None = None,
) -> Pair:
    """Handshake both ends over an in-memory (or given) transport pair."""
    client_transport, server_transport = (pair or trio.testing.memory_stream_pair)()
    server = TLSStream(server_transport, server_ctx)
    client = trio.SSLStream(client_transport, client_ctx, server_hostname=hostname)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return server, client


async def handshake_errors(
    server_ctx: SSL.Context, client_ctx: ssl.SSLContext
) -> tuple[BaseException | None, BaseException | None]:
    """Run a handshake expected to fail; return (server error, client error)."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    server = TLSStream(server_transport, server_ctx)
    client = trio.SSLStream(client_transport, client_ctx, server_hostname="localhost")
    errors: dict[str, BaseException | None] = {"server": None, "client": None}

    async def side(name: str, stream: trio.abc.AsyncResource, afn: Callable[[], Awaitable[None]]) -> None:
        try:
            await afn()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            errors[name] = exc
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "server", server, server.do_handshake)
        nursery.start_soon(side, "client", client, client.do_handshake)
    return errors["server"], errors["client"]


# -- handshake and negotiation ------------------------------------------------


def test_handshake_alpn_h2_and_sni(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), client_context(ca))
        assert server.info.alpn == "h2"
        assert server.alpn == "h2"
        assert server.info.server_name == "localhost"
        assert server.info.tls_version == "TLSv1.3"
        assert server.info.cipher.startswith("TLS_")
        assert server.info.peer_cert_pem is None
        assert client.selected_alpn_protocol() == "h2"
        await server.do_handshake()  # a second call is a no-op
        await client.aclose()
        await server.aclose()

    run(main)


def test_info_before_handshake_raises(ca: trustme.CA, tmp_path: Path) -> None:
    a, _ = trio.testing.memory_stream_pair()
    stream = TLSStream(a, server_context(ca, tmp_path))
    with pytest.raises(RuntimeError):
        _ = stream.info


def test_no_sni_for_ip_address(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), hostname="127.0.0.1")
        assert server.info.server_name is None
        await client.aclose()
        await server.aclose()

    run(main)


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["h2", "http/1.1"], "h2"),
        (["http/1.1", "h2"], "h2"),
        (["http/1.1"], "http/1.1"),
        (None, None),
        (["spdy/3"], None),
    ],
)
def test_alpn_selection(ca: trustme.CA, tmp_path: Path, offered: list[str] | None, expected: str | None) -> None:
    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), client_context(ca, offered))
        assert server.info.alpn == expected
        assert client.selected_alpn_protocol() == expected
        await client.aclose()
        await server.aclose()

    run(main)


def tls12_client(ca: trustme.CA, ciphers: str) -> ssl.SSLContext:
    ctx = client_context(ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize(
    "cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
)
def test_tls12_ecdhe_aead_accepted(rsa_ca: trustme.CA, tmp_path: Path, cipher: str) -> None:
    async def main() -> None:
        ctx = server_context(rsa_ca, tmp_path, trustme.KeyType.RSA)
        server, client = await connect(ctx, tls12_client(rsa_ca, cipher))
        assert server.info.tls_version == "TLSv1.2"
        assert server.info.cipher == cipher
        assert server.info.alpn == "h2"
        await client.aclose()
        await server.aclose()

    run(main)


def test_tls12_ecdsa_certificate_accepted(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), tls12_client(ca, "ECDHE+AESGCM"))
        assert server.info.cipher.startswith("ECDHE-ECDSA-AES")
        await client.aclose()
        await server.aclose()

    run(main)


@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-GCM-SHA256",  # AEAD but RSA key exchange (no forward secrecy)
        "DHE-RSA-AES128-GCM-SHA256",  # finite-field DHE
        "ECDHE-RSA-AES128-SHA",  # ECDHE but CBC
        "ECDHE-RSA-AES256-SHA384",  # ECDHE but CBC
        "AES128-SHA",
    ],
)
def test_tls12_weak_ciphers_rejected(rsa_ca: trustme.CA, tmp_path: Path, cipher: str) -> None:
    async def main() -> None:
        ctx = server_context(rsa_ca, tmp_path, trustme.KeyType.RSA)
        server_exc, client_exc = await handshake_errors(ctx, tls12_client(rsa_ca, cipher))
        assert isinstance(server_exc, trio.BrokenResourceError)
        assert isinstance(server_exc.__cause__, SSL.Error)
        assert "no shared cipher" in str(server_exc.__cause__)
        assert client_exc is not None

    run(main)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_rejected(ca: trustme.CA, tmp_path: Path, version: ssl.TLSVersion) -> None:
    async def main() -> None:
        client_ctx = client_context(ca)
        with pytest.warns(DeprecationWarning, match="TLSVersion"):
            client_ctx.maximum_version = version
        with pytest.warns(DeprecationWarning, match="TLSVersion"):
            client_ctx.minimum_version = version
        client_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        server_exc, client_exc = await handshake_errors(server_context(ca, tmp_path), client_ctx)
        assert isinstance(server_exc, trio.BrokenResourceError)
        assert "unsupported protocol" in str(server_exc.__cause__)
        assert client_exc is not None

    run(main)


def test_untrusted_client_alert_breaks_server(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        other = trustme.CA()
        server_exc, client_exc = await handshake_errors(server_context(ca, tmp_path), client_context(other))
        assert isinstance(client_exc, trio.BrokenResourceError)
        assert isinstance(server_exc, trio.BrokenResourceError)

    run(main)


def test_peer_closes_during_handshake(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        server = TLSStream(server_transport, server_context(ca, tmp_path))
        await client_transport.send_all(b"\x16\x03\x01")  # a truncated record header
        await client_transport.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await server.do_handshake()
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        await server.aclose()

    run(main)


# -- data transfer ------------------------------------------------------------


def socket_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_large_echo_both_ways(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    """A reader task and a writer task share the server stream, as in h2gate."""
    size = 6 * 1024 * 1024
    payload = random.Random(1).randbytes(size)

    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        send_channel, receive_channel = trio.open_memory_channel[bytes](8)

        async def server_reader() -> None:
            async with send_channel:
                while data := await server.receive_some():
                    await send_channel.send(data)

        async def server_writer() -> None:
            async with receive_channel:
                async for data in receive_channel:
                    await server.send_all(data)
            await server.aclose()

        async def client_sender() -> None:
            rng = random.Random(2)
            view = memoryview(payload)
            while view:
                step = rng.choice((1, 100, 16384, 70000, 1 << 20))
                await client.send_all(view[:step])
                view = view[step:]

        async def client_receiver() -> None:
            got = bytearray()
            while len(got) < size:
                data = await client.receive_some(1 << 20)
                assert data
                got += data
            assert got == payload
            await client.aclose()  # close_notify: the server reader sees b""

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_reader)
            nursery.start_soon(server_writer)
            nursery.start_soon(client_sender)
            nursery.start_soon(client_receiver)

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_big_single_send_and_small_reads(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    """Over a socket, ciphertext goes straight from the BIO to the socket (h2gate.internals.openssl); the kernel
    takes only part of each 256 KiB write from a socketpair, so the rest takes the queued path."""
    payload = random.Random(3).randbytes(5 * 1024 * 1024 + 17)

    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        assert (server._direct is not None) == (transport == "socket")

        async def receive_all() -> None:
            got = bytearray()
            while len(got) < len(payload):
                got += await client.receive_some(65536)
            assert got == payload

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, payload)
            nursery.start_soon(receive_all)
        await client.send_all(b"abcdef")
        assert await server.receive_some(2) == b"ab"
        assert await server.receive_some(100) == b"cdef"
        await server.aclose()
        assert await client.receive_some() == b""
        await client.aclose()

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_data_then_close_notify(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    """Over a socket the reader decrypts through h2gate.internals.openssl.DirectRead; the answers are the same."""

    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        assert (server._reader is not None) == (transport == "socket")
        await client.send_all(b"last words")
        await client.aclose()
        assert await server.receive_some() == b"last words"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""
        await server.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await server.send_all(b"x")

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_transport_eof_without_close_notify(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        with trio.move_on_after(0.05) as waiting:  # a cancelled read consumes nothing
            await server.receive_some()
        assert waiting.cancelled_caught
        with trio.move_on_after(0.05):  # the client takes the session tickets: else its close is a reset
            await client.receive_some()
        await client.send_all(b"hi")
        await client.transport_stream.aclose()
        assert await server.receive_some() == b"hi"
        assert await server.receive_some() == b""
        await server.aclose()

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_garbage_after_handshake_breaks_stream(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        await client.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        with pytest.raises(trio.BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, SSL.Error)
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"x")
        # The server sent a fatal alert before giving up.
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()
        await server.aclose()
        await trio.aclose_forcefully(client)

    run(main)


def test_aclose_does_not_hang_on_a_peer_that_never_reads(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        # TLS 1.2: no session tickets pending after the handshake, which the
        # lockstep transport could not deliver to a client that never reads.
        server, client = await connect(
            server_context(ca, tmp_path),
            tls12_client(ca, "ECDHE+AESGCM"),
            pair=trio.testing.lockstep_stream_pair,
        )
        start = trio.current_time()
        await server.aclose()
        assert 0.9 < trio.current_time() - start < 2
        await trio.aclose_forcefully(client)

    run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_reader_not_blocked_by_stuck_writer(ca: trustme.CA, tmp_path: Path) -> None:
    """A writer stalled on a peer that stopped reading must not stall the reader."""

    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=socket_pair)
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                while True:
                    await server.send_all(b"x" * 65536)

            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(50):
                await client.send_all(b"ping %d" % i)
                assert await server.receive_some(100) == b"ping %d" % i
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_send_deadline_breaks_the_stream_once_the_peer_stops_reading(
    ca: trustme.CA, tmp_path: Path, transport: str
) -> None:
    """send_all_by (the connection writer's send) meets its deadline only while the peer takes the bytes."""
    from h2gate.net.socket_send import SendTimeout, sender

    async def main() -> None:
        pair = socket_pair if transport == "socket" else None
        server, client = await connect(server_context(ca, tmp_path), client_context(ca), pair=pair)
        assert sender(server) == server.send_all_by
        await server.send_all_by(b"first", trio.current_time() + 5)  # taken at once: no wait, no timeout
        assert await client.receive_some(100) == b"first"
        start = trio.current_time()
        with pytest.raises(SendTimeout):
            while True:  # nobody reads any more
                await server.send_all_by(b"x" * 65536, start + 0.3)
        assert 0.3 <= trio.current_time() - start < 3
        with pytest.raises(trio.BrokenResourceError):  # part of a record may be out: the stream is done
            await server.send_all(b"late")
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)

    run(main)


# -- the generic trio stream contract -----------------------------------------


def test_check_two_way_stream(ca: trustme.CA, tmp_path: Path) -> None:
    server_ctx = server_context(ca, tmp_path)

    async def stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await connect(server_ctx, client_context(ca))

    async def clogged_stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        # Lockstep transports have no buffer; TLS 1.2 leaves nothing in flight.
        return await connect(server_ctx, tls12_client(ca, "ECDHE+AESGCM"), pair=trio.testing.lockstep_stream_pair)

    run(lambda: trio.testing.check_two_way_stream(stream_maker, clogged_stream_maker))


def test_concurrent_receives_are_busy(ca: trustme.CA, tmp_path: Path) -> None:
    async def main() -> None:
        server, client = await connect(server_context(ca, tmp_path), client_context(ca))

        async def two_readers() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.receive_some)
                nursery.start_soon(server.receive_some)

        with pytest.raises(ExceptionGroup) as info:
            await two_readers()
        assert info.group_contains(trio.BusyResourceError)
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)

    run(main)


@pytest.mark.parametrize("transport", ["memory", "socket"])
def test_release_buffers_renews_the_bios_and_keeps_the_session(ca: trustme.CA, tmp_path: Path, transport: str) -> None:
    """After a large exchange an idle stream swaps in empty BIOs; a half-received record survives the swap."""
    from h2gate.internals.probes import OPENSSL_BIO_PAIR, PROBES

    big = random.randbytes(300_000)

    async def main() -> None:
        server, client = await connect(
            server_context(ca, tmp_path), client_context(ca), pair=socket_pair if transport == "socket" else None
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, big)
            got = bytearray()
            while len(got) < len(big):
                got += await client.receive_some(65536)
        assert got == big
        before = (server._conn._into_ssl, server._conn._from_ssl)  # type: ignore[attr-defined]
        server.release_buffers()
        after = (server._conn._into_ssl, server._conn._from_ssl)  # type: ignore[attr-defined]
        if PROBES[OPENSSL_BIO_PAIR]:
            assert after[0] != before[0] and after[1] != before[1]
        server.release_buffers()  # nothing grew since: the same pair stays
        assert (server._conn._into_ssl, server._conn._from_ssl) == after  # type: ignore[attr-defined]

        # Half of a record reaches the server, the BIOs are renewed, then the rest: nothing is lost.
        await client.send_all(b"ping" * 5000)
        got = bytearray()
        got += await server.receive_some(7)
        server._grown = True  # as if it had been busy
        server.release_buffers()
        while len(got) < 20000:
            got += await server.receive_some(65536)
        assert got == b"ping" * 5000
        await server.send_all(b"pong")
        assert await client.receive_some(10) == b"pong"
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)

    run(main)
