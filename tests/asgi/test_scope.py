"""Every key of the ASGI HTTP scope, and receive() streaming, as the app sees them over real HTTP/2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from h2.errors import ErrorCodes

from h2gate.asgi.http import HTTP_EXTENSIONS
from tests.conftest import Certs, ServerProcess, h2c_client, tls_client
from tests.h2raw import RawH2, Stream

SCOPE_KEYS = {
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "state",
    "extensions",
}


def unjson(value: Any) -> Any:
    """Undo the probe app's JSON encoding: {"bytes": s} -> bytes, lists of two -> tuples where it matters."""
    if isinstance(value, dict):
        if set(value) == {"bytes"}:
            return value["bytes"].encode("latin-1")
        return {k: unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unjson(v) for v in value]
    return value


def scope_of(resp: Stream) -> dict[str, Any]:
    assert resp.status == 200, resp
    scope = unjson(json.loads(resp.body))
    scope["headers"] = [tuple(h) for h in scope["headers"]]
    return scope


@pytest.fixture(scope="module")
def servers(certs: Certs) -> Iterator[dict[str, ServerProcess]]:
    """Probe servers started on first use: h2c (asyncio, trio), TLS, and one with --root-path."""
    started: dict[str, ServerProcess] = {}
    flags = {
        "asyncio": [],
        "trio": ["--loop", "trio"],
        "tls": ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem],
        "root": ["--root-path", "/mount"],
    }

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: str) -> ServerProcess:
            server = ServerProcess(["apps.faults:probe", "-b", "127.0.0.1:0", *flags[key]]).wait_ready()
            started[key] = server
            self[key] = server
            return server

    yield Lazy()
    for server in started.values():
        assert server.stop() == 0, server.output
        assert "Traceback" not in server.output, server.output


# -- the scope -------------------------------------------------------------------------------


def test_scope_over_h2c(servers: dict[str, ServerProcess]) -> None:
    server = servers["asyncio"]
    headers = [
        (b"user-agent", b"raw-h2"),
        (b"cookie", b"a=1"),
        (b"x-multi", b"one"),
        (b"cookie", b"b=2"),
        (b"x-multi", b"two"),
        (b"cookie", b"c=3"),
    ]
    with RawH2(server.port) as raw:
        scope = scope_of(raw.get("/caf%C3%A9%20x?a=1&b=%20&c=%C3%A9", headers=headers))
        client_address = raw.local_address
    assert SCOPE_KEYS <= set(scope), set(scope)
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"]["spec_version"], str)
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café x"
    assert scope["raw_path"] == b"/caf%C3%A9%20x"
    assert scope["query_string"] == b"a=1&b=%20&c=%C3%A9"
    assert scope["root_path"] == ""
    names = [name for name, _ in scope["headers"]]
    assert not [n for n in names if n.startswith(b":")], names
    assert scope["headers"][0] == (b"host", f"127.0.0.1:{server.port}".encode())
    assert names.count(b"host") == 1
    assert [v for n, v in scope["headers"] if n == b"cookie"] == [b"a=1; b=2; c=3"]
    assert [v for n, v in scope["headers"] if n == b"x-multi"] == [b"one", b"two"]
    assert (b"user-agent", b"raw-h2") in scope["headers"]
    assert scope["client"] == [client_address[0], client_address[1]]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"probe": "ready"}
    assert isinstance(scope["extensions"], dict)
    # a GET with END_STREAM on its HEADERS is one http.request with an empty body
    assert (scope["body"], scope["messages"]) == (b"", 1)


def test_scope_method_body_and_host_header(servers: dict[str, ServerProcess]) -> None:
    server = servers["asyncio"]
    authority = f"127.0.0.1:{server.port}".encode()
    with RawH2(server.port) as raw:
        scope = scope_of(raw.get("/p", method="PATCH", body=b"payload", headers=[(b"host", authority)]))
        plain = scope_of(raw.get("/"))
    assert scope["method"] == "PATCH"
    assert scope["body"] == b"payload"
    # a host field that repeats :authority is not duplicated
    assert [h for h in scope["headers"] if h[0] == b"host"] == [(b"host", authority)]
    assert scope["headers"][0][0] == b"host"
    assert (plain["path"], plain["raw_path"], plain["query_string"]) == ("/", b"/", b"")


def test_scope_with_httpx(servers: dict[str, ServerProcess]) -> None:
    server = servers["trio"]
    with h2c_client() as client:
        r = client.get(server.url + "/a%2Fb/%E2%9C%93", params={"q": "x y"}, headers={"X-Upper": "V"})
    scope = unjson(r.json())
    assert r.http_version == "HTTP/2"
    assert scope["path"] == "/a/b/✓"
    assert scope["raw_path"] == b"/a%2Fb/%E2%9C%93"
    assert scope["query_string"] == b"q=x+y"
    headers = [tuple(h) for h in scope["headers"]]
    assert headers[0] == (b"host", f"127.0.0.1:{server.port}".encode())
    assert (b"x-upper", b"V") in headers


def test_scheme_https_over_tls(servers: dict[str, ServerProcess], certs: Certs) -> None:
    server = servers["tls"]
    url = server.url.replace("127.0.0.1", "localhost")
    with tls_client(certs) as client:
        r = client.get(url + "/secure?x=1")
    scope = unjson(r.json())
    assert r.http_version == "HTTP/2"
    assert scope["scheme"] == "https"
    assert scope["http_version"] == "2"
    assert scope["path"] == "/secure"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert tuple(scope["headers"][0]) == (b"host", f"localhost:{server.port}".encode())
    # Over TLS the http extensions are there beside the tls one (gRPC apps look for the trailers one).
    assert "tls" in scope["extensions"]
    assert set(HTTP_EXTENSIONS) <= set(scope["extensions"])
    with RawH2(server.port, ca_pem=certs.ca_pem) as raw:
        assert scope_of(raw.get("/raw-tls"))["scheme"] == "https"


@pytest.mark.parametrize(
    ("target", "path", "raw_path"),
    [
        ("/x?q=1", "/mount/x", b"/mount/x"),
        ("/", "/mount/", b"/mount/"),
        ("/caf%C3%A9", "/mount/café", b"/mount/caf%C3%A9"),
        # the prefix is always added (as uvicorn does), whatever the path starts with
        ("/mountain", "/mount/mountain", b"/mount/mountain"),
        ("/mount/x", "/mount/mount/x", b"/mount/mount/x"),
    ],
)
def test_root_path(servers: dict[str, ServerProcess], target: str, path: str, raw_path: bytes) -> None:
    server = servers["root"]
    with RawH2(server.port) as raw:
        scope = scope_of(raw.get(target))
    assert scope["root_path"] == "/mount"
    assert scope["path"] == path
    assert scope["raw_path"] == raw_path
    assert scope["path"].startswith(scope["root_path"])


# -- receive() ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_receive_streams_chunks_then_disconnect(servers: dict[str, ServerProcess], loop: str) -> None:
    """Each DATA frame sent after the previous one was answered arrives as its own http.request."""
    server = servers[loop]
    path = f"/{loop}/chunks"
    with RawH2(server.port) as raw:
        sid = raw.request("POST", path, end_stream=False)
        expected = b""
        for chunk, last in ((b"aaa", False), (b"bbbb", False), (b"cc", True)):
            raw.send_data(sid, chunk, end_stream=last)
            expected += f"{len(chunk)} {chunk.decode()} more={not last}\n".encode()
            # wait for the app's answer to this chunk before sending the next one
            resp = raw.response(sid, until=lambda r, e=expected: r.body == e or r.done)
            assert resp.body == expected
        resp = raw.response(sid)
        assert (resp.status, resp.ended, resp.reset) == (200, True, None)
        assert resp.body.decode().splitlines() == ["3 aaa more=True", "4 bbbb more=True", "2 cc more=False"]
        assert raw.get("/after").status == 200
    server.wait_for_log(rf"probe: {path} receive\(\) after the response -> http.disconnect")


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_receive_reports_client_reset_as_disconnect(servers: dict[str, ServerProcess], loop: str) -> None:
    server = servers[loop]
    path = f"/{loop}/wait-disconnect"
    with RawH2(server.port) as raw:
        sid = raw.request("POST", path, end_stream=False)
        raw.send_data(sid, b"some of the body")
        raw.reset(sid, ErrorCodes.CANCEL)
        server.wait_for_log(rf"probe: {path} got http.disconnect before responding")
        assert raw.get("/after-reset").status == 200


def test_large_body_arrives_whole(servers: dict[str, ServerProcess]) -> None:
    server = servers["asyncio"]
    body = bytes(range(256)) * 2048  # 512 KiB: more than one window's worth
    with RawH2(server.port) as raw:
        sid = raw.request("POST", "/big", end_stream=False)
        # h2 refuses to send past the flow-control window: feed it as the server opens it
        sent = 0
        while sent < len(body):
            window = min(raw.h2.local_flow_control_window(sid), raw.h2.max_outbound_frame_size)
            if window <= 0:
                raw.wait_for(lambda: raw.h2.local_flow_control_window(sid) > 0, what="the server to open its window")
                continue
            piece = body[sent : sent + window]
            sent += len(piece)
            raw.send_data(sid, piece, end_stream=sent == len(body))
        scope = scope_of(raw.response(sid))
    assert scope["body"] == body
    assert scope["messages"] >= 2
