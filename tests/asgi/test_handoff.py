"""The last piece of a response leaves without the app waiting for it (asyncio bridge, WSGI threads).

These paths save a thread round trip per request; what must not change is
what the client and the log see.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time

import h2.config
import h2.connection
import h2.errors
import pytest

from tests.conftest import h2c_client


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_response_arrives_while_the_app_keeps_running(serve, loop: str) -> None:
    server = serve("apps.handoff:app", "--loop", loop)
    with h2c_client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        # If the final body waited for the app to return, this would time out: the app
        # only returns after /release, which is sent once this response is in.
        r = client.get(server.url + "/after", timeout=5)
        assert r.status_code == 200
        assert r.content == b"sent before the app returned"
        released = pool.submit(client.get, server.url + "/release", timeout=10).result(timeout=15)
        assert released.content == b"released"


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_bad_final_body_is_a_500(serve, loop: str) -> None:
    server = serve("apps.handoff:app", "--loop", loop)
    with h2c_client() as client:
        r = client.get(server.url + "/bad-final")
        assert r.status_code == 500
        ok = client.get(server.url + "/release")  # the connection still serves
        assert ok.status_code == 200
    server.wait_for_log(r"GET /bad-final: ASGI error in the app: http.response.body body must be bytes")


def test_wsgi_close_failure_after_a_complete_response(serve) -> None:
    server = serve("apps.handoff:wsgi")
    with h2c_client() as client:
        r = client.get(server.url + "/close-fails")
        assert r.status_code == 200
        assert r.content == b"complete body"
        head = client.head(server.url + "/")
        assert head.status_code == 200
        assert head.content == b""
        assert client.get(server.url + "/").content == b"ok"
    server.wait_for_log(r"GET /close-fails: exception in the app")


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_goaway_with_an_error_right_after_requests(serve, loop: str) -> None:
    """A client that sends requests and a GOAWAY PROTOCOL_ERROR in one write leaves nothing at ERROR.

    h2 closes its state at such a GOAWAY; the apps still running see a disconnect
    (and may raise an OSError for it), not an h2 error from send().
    """
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log")
    for attempt in range(8):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        with_body = attempt % 2 == 1
        headers = [(":method", "POST" if with_body else "GET"), (":path", "/hello"), (":scheme", "http")]
        conn.send_headers(1, [*headers, (":authority", "x")], end_stream=not with_body)
        if with_body:
            conn.send_data(1, b"x" * 100)
        conn.close_connection(error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(conn.data_to_send())
            time.sleep(0.05)
    with h2c_client() as client:
        assert client.get(server.url + "/hello").content == b"hello"
    server.wait_for_log(r"sent GOAWAY")
    assert "[ERROR]" not in server.output
    assert "Traceback" not in server.output
