"""Many streams at once: on one connection, and across several connections.

The app's /barrier endpoint answers only once ``n`` requests are waiting in it at
the same time (504 after a timeout otherwise), so a 200 on every stream proves
the streams really were in flight together, not served one after another.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.h2raw import RawH2

APP = "apps.flow:app"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("tls", "loop"), [(False, "trio"), (False, "asyncio"), (True, "asyncio")])
def test_100_concurrent_streams_on_one_connection(serve, certs, tls: bool, loop: str) -> None:
    server = serve(APP, "--loop", loop, tls=tls)
    name, n = uuid.uuid4().hex, 100
    with RawH2(server.port, ca_pem=certs.ca_pem if tls else None) as client:
        client.wait_for(lambda: 3 in client.remote_settings, what="the server's SETTINGS")
        assert client.remote_settings[3] == n  # SETTINGS_MAX_CONCURRENT_STREAMS
        sids = [client.request("GET", f"/barrier?name={name}&n={n}&timeout=20") for _ in range(n)]
        assert client.h2.open_outbound_streams == n
        client.wait_for(lambda: all(client.streams[s].done for s in sids), timeout=30, what="100 responses")
        bodies = set()
        for sid in sids:
            stream = client.streams[sid]
            assert stream.reset is None and stream.status == 200, (sid, stream.status, bytes(stream.data))
            bodies.add(bytes(stream.data))
        # Every request arrived at the barrier exactly once: indexes 1..100, all distinct.
        assert bodies == {f"{name}:{i}/{n}".encode() for i in range(1, n + 1)}
        # And the connection carries on with the next request.
        assert client.get("/hello").data == b"hello"
        assert not client.goaways


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_several_connections_at_once(serve, loop: str) -> None:
    server = serve(APP, "--loop", loop)
    name, conns, per_conn = uuid.uuid4().hex, 5, 20
    n = conns * per_conn
    results: list[list[tuple[int, int | None, bytes]]] = [[] for _ in range(conns)]
    errors: list[BaseException] = []

    def one_connection(index: int) -> None:
        try:
            with RawH2(server.port) as client:
                sids = [client.request("GET", f"/barrier?name={name}&n={n}&timeout=20") for _ in range(per_conn)]
                client.wait_for(lambda: all(client.streams[s].done for s in sids), timeout=30, what="responses")
                for sid in sids:
                    s = client.streams[sid]
                    results[index].append((s.status, s.reset, bytes(s.data)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_connection, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert errors == []
    flat = [r for per in results for r in per]
    assert len(flat) == n
    assert all(status == 200 and reset is None for status, reset, _ in flat), flat
    assert {body for _, _, body in flat} == {f"{name}:{i}/{n}".encode() for i in range(1, n + 1)}
    assert all(len(per) == per_conn for per in results)
