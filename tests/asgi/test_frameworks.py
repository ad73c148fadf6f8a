"""Real frameworks over real HTTP/2: Starlette (asyncio and trio app loops, h2c and TLS) and Django."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TESTS, Certs, ServerProcess, h2c_client, tls_client
from tests.h2raw import RawH2

LOOPS = ["asyncio", "trio"]
TRANSPORTS = ["h2c", "tls"]


class Servers(dict):  # type: ignore[type-arg]
    """Servers started on first use, keyed by a tuple; all stopped (and checked) at module teardown."""

    def __init__(self, start) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.start = start

    def __missing__(self, key: str | tuple[str, ...]) -> ServerProcess:
        server = self.start(*key) if isinstance(key, tuple) else self.start(key)
        self[key] = server
        return server


def client_for(transport: str, certs: Certs) -> httpx.Client:
    return h2c_client() if transport == "h2c" else tls_client(certs)


def base_url(server: ServerProcess) -> str:
    # the test certificate names localhost and 127.0.0.1; use the name for TLS like a browser would
    return server.url.replace("127.0.0.1", "localhost") if server.url.startswith("https") else server.url


# -- Starlette -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def star_servers(certs: Certs) -> Iterator[Servers]:
    def start(loop: str, transport: str) -> ServerProcess:
        tls = ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem] if transport == "tls" else []
        return ServerProcess(["apps.star:app", "-b", "127.0.0.1:0", "--loop", loop, *tls]).wait_ready()

    servers = Servers(start)
    yield servers
    for server in servers.values():
        assert server.stop() == 0, server.output
        assert "star: shutdown" in server.lines, server.output
        assert "internal error on a connection" not in server.output


@pytest.fixture(params=[(loop, transport) for loop in LOOPS for transport in TRANSPORTS], ids="-".join)
def star(request: pytest.FixtureRequest, star_servers: Servers, certs: Certs) -> Iterator[tuple[str, httpx.Client]]:
    server = star_servers[request.param]
    with client_for(request.param[1], certs) as client:
        client.base_url = base_url(server)  # type: ignore[assignment]
        yield request.param[0], client


def test_starlette_routes_and_json(star: tuple[str, httpx.Client]) -> None:
    _, client = star
    home = client.get("/")
    assert (home.http_version, home.status_code, home.text) == ("HTTP/2", 200, "starlette over h2gate")
    item = client.get("/items/42", params={"q": "a b"})
    scheme = client.base_url.scheme
    assert item.json() == {
        "item_id": 42,
        "q": "a b",
        "http_version": "2",
        "scheme": scheme,
        "host": f"{client.base_url.host}:{client.base_url.port}",
    }
    assert client.get("/items/not-a-number").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/echo").status_code == 405


def test_starlette_bodies(star: tuple[str, httpx.Client]) -> None:
    _, client = star
    payload = bytes(range(256)) * 1000
    r = client.post("/echo", content=payload, headers={"content-type": "application/x-test"})
    assert (r.status_code, r.headers["content-type"], r.content) == (200, "application/x-test", payload)
    assert r.headers["content-length"] == str(len(payload))
    form = client.post("/form", data={"name": "Zoë", "empty": "", "n": "1"})
    assert form.json() == {"fields": [["name", "Zoë"], ["empty", ""], ["n", "1"]]}

    def generate() -> Iterator[bytes]:
        for _ in range(20):
            yield b"z" * 10_000

    up = client.post("/upload", content=generate())
    assert up.json()["size"] == 200_000
    assert up.json()["chunks"] >= 1


def test_starlette_streaming_response(star: tuple[str, httpx.Client]) -> None:
    _, client = star
    with client.stream("GET", "/stream", params={"n": 200}) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        text = b"".join(r.iter_bytes()).decode()
    assert text.splitlines() == [f"chunk {i}" for i in range(200)]


def test_starlette_lifespan_state_and_loop(star: tuple[str, httpx.Client]) -> None:
    loop, client = star
    assert client.get("/state").json() == {
        "started_on": loop,
        "greeting": "hello from lifespan",
        "running_on": loop,
    }


def test_starlette_view_exception(star: tuple[str, httpx.Client], star_servers: Servers) -> None:
    loop, client = star
    r = client.get("/broken")
    assert r.status_code == 500
    assert client.get("/").status_code == 200
    server = star_servers[(loop, "tls" if client.base_url.scheme == "https" else "h2c")]
    server.wait_for_log(r"RuntimeError: starlette view failed")


@pytest.mark.parametrize("loop", LOOPS)
def test_starlette_concurrent_streams_on_one_connection(star_servers: Servers, loop: str) -> None:
    server = star_servers[(loop, "h2c")]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=server.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.get(f"/items/{i}") for i in range(30)),
                *(client.get("/stream", params={"n": 50}) for _ in range(10)),
            )

    responses = asyncio.run(main())
    assert [r.json()["item_id"] for r in responses[:30]] == list(range(30))
    assert all(r.text.count("\n") == 50 for r in responses[30:])
    assert {r.http_version for r in responses} == {"HTTP/2"}


# -- Django ------------------------------------------------------------------------------------

DJANGO_DIR = TESTS / "djproject"


@pytest.fixture(scope="module")
def django_servers(certs: Certs) -> Iterator[Servers]:
    def start(transport: str) -> ServerProcess:
        tls = ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem] if transport == "tls" else []
        args = ["mysite.asgi:application", "--app-dir", str(DJANGO_DIR), "-b", "127.0.0.1:0", *tls]
        return ServerProcess(args, env={"DJANGO_SETTINGS_MODULE": "mysite.settings"}).wait_ready()

    servers = Servers(start)
    yield servers
    for server in servers.values():
        assert server.stop() == 0, server.output
        assert "internal error on a connection" not in server.output


@pytest.fixture(params=TRANSPORTS)
def django(request: pytest.FixtureRequest, django_servers: Servers, certs: Certs) -> Iterator[httpx.Client]:
    server = django_servers[request.param]
    with client_for(request.param, certs) as client:
        client.base_url = base_url(server)  # type: ignore[assignment]
        yield client


def test_django_plain_and_json(django: httpx.Client) -> None:
    home = django.get("/")
    assert (home.http_version, home.status_code, home.text) == ("HTTP/2", 200, "django over h2gate")
    assert home.headers["content-type"] == "text/plain"
    info = django.get("/info", params={"x": "1"}, headers={"cookie": "session=abc; theme=dark"})
    url = django.base_url
    assert info.json() == {
        "method": "GET",
        "path": "/info",
        "query": {"x": "1"},
        "scheme": url.scheme,
        "host": f"{url.host}:{url.port}",
        "server_port": str(url.port),
        "cookies": {"session": "abc", "theme": "dark"},
        "remote_addr": "127.0.0.1",
    }


def test_django_split_cookie_fields(django_servers: Servers) -> None:
    """HTTP/2 clients may send each cookie as its own field; Django must see them all."""
    server = django_servers["h2c"]
    with RawH2(server.port) as raw:
        r = raw.get("/info", headers=[(b"cookie", b"session=abc"), (b"cookie", b"theme=dark"), (b"cookie", b"x=1")])
    assert r.status == 200
    assert json.loads(r.body)["cookies"] == {"session": "abc", "theme": "dark", "x": "1"}


def test_django_post_echo_and_csrf(django: httpx.Client) -> None:
    payload = b"\x00binary\xff" * 10_000
    r = django.post("/echo", content=payload, headers={"content-type": "application/octet-stream"})
    assert (r.status_code, r.content) == (200, payload)
    form = django.post("/echo", data={"a": "1", "b": "two"})
    assert form.text == "a=1&b=two"
    # the same kind of POST to a view that is not CSRF-exempt is refused by Django's middleware
    assert django.post("/guarded", data={"a": "1"}).status_code == 403


def test_django_async_view_and_404(django: httpx.Client) -> None:
    assert django.get("/async").json() == {"async": True, "asyncio": True, "library": "asyncio"}
    missing = django.get("/things/widget")
    assert missing.status_code == 404
    assert django.get("/no/such/url").status_code == 404
    assert django.get("/").status_code == 200  # the connection is still fine


def test_django_lifespan_is_skipped_with_one_info_line(django_servers: Servers) -> None:
    server = django_servers["h2c"]
    notes = [line for line in server.lines if "ASGI lifespan" in line]
    assert len(notes) == 1, server.output
    assert "[INFO]" in notes[0] and "ValueError" in notes[0]
    with h2c_client() as client:
        assert client.get(server.url + "/").status_code == 200


def test_django_project_layout() -> None:
    """The project is a plain startproject layout: asgi.py uses get_asgi_application()."""
    asgi = Path(DJANGO_DIR / "mysite" / "asgi.py").read_text()
    assert "application = get_asgi_application()" in asgi
