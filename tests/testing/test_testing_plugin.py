"""The pytest plugin h2gate.testing: the ``h2gate_server`` fixture in plain, pytest-trio and anyio tests.

The fixture comes from the installed entry point (no conftest imports it), so
these tests also prove the plugin registration. A few of them redo simple
checks of tests/asgi/test_scope.py and test_frameworks.py in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from h2gate.errors import ConfigError, StartupError
from h2gate.ops.inprocess import MISSING_EXTRAS, InProcessServer
from tests.apps.common import read_body, respond
from tests.apps.faults import probe
from tests.h2raw import RawH2

Factory = Callable[..., InProcessServer]
TESTS = Path(__file__).resolve().parents[1]


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [f"wsgi {environ['SERVER_PROTOCOL']} {environ['wsgi.url_scheme']}".encode()]


async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        raise ValueError("boom from the app")


# -- plain (sync) tests ------------------------------------------------------------------------


def test_scope_over_h2c(h2gate_server: Factory) -> None:
    """test_scope.py's scope check, against the in-process server."""
    server = h2gate_server(probe, tls=False)
    assert server.url == f"http://127.0.0.1:{server.port}" and server.ca_file is None
    with server.client() as client:
        response = client.get("/caf%C3%A9?a=1", headers={"x-multi": "one"})
    assert (response.status_code, response.http_version) == (200, "HTTP/2")
    scope = response.json()
    assert (scope["type"], scope["http_version"], scope["scheme"], scope["method"]) == ("http", "2", "http", "GET")
    assert scope["path"] == "/café"
    assert scope["query_string"] == {"bytes": "a=1"}
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"probe": "ready"}  # lifespan startup ran before the fixture returned


def test_tls_with_the_throwaway_ca(h2gate_server: Factory) -> None:
    server = h2gate_server(probe)
    assert server.url.startswith("https://127.0.0.1:")
    with server.client() as client:
        response = client.get("/tls")
    assert (response.http_version, response.json()["scheme"]) == ("HTTP/2", "https")
    # ca_file is for other clients too: the suite's raw client trusts it the same way.
    with RawH2(server.port, ca_pem=server.ca_file) as raw:
        assert raw.get("/raw").status == 200
    # Without the CA the certificate is refused.
    with httpx.Client(http2=True) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get(server.url)


def test_wsgi_app_detected(h2gate_server: Factory) -> None:
    server = h2gate_server(wsgi_hello, tls=False)
    with server.client() as client:
        assert client.get("/").text == "wsgi HTTP/2 http"


def test_options_reach_the_server(h2gate_server: Factory) -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await respond(send, 200, await read_body(receive))

    plain = h2gate_server(echo, tls=False, lifespan="off")
    quiet = h2gate_server(echo, tls=False, lifespan="off", server_header=False)
    with plain.client() as client:
        assert client.post("/", content=b"small").headers["server"] == "h2gate"
    with quiet.client() as client:
        response = client.post("/", content=b"small")
    assert response.text == "small" and "server" not in response.headers


def test_unknown_or_bad_options_are_refused(h2gate_server: Factory) -> None:
    with pytest.raises(TypeError, match="unknown h2gate option"):
        h2gate_server(probe, tls=False, max_body=1)
    with pytest.raises(ConfigError, match="must be at least 1"):
        h2gate_server(probe, tls=False, max_concurrent_streams=0)


def test_lifespan_failure_is_a_startup_error(h2gate_server: Factory) -> None:
    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(StartupError, match="no database"):
        h2gate_server(refuses, tls=False, lifespan="on")


def test_expected_errors_can_be_inspected(h2gate_server: Factory) -> None:
    server = h2gate_server(failing, tls=False, fail_on_error=False)
    with server.client() as client:
        assert client.get("/").status_code == 500
    assert any("boom from the app" in str(r.exc_info[1]) for r in server.errors if r.exc_info)


def test_stop_is_graceful_and_final() -> None:
    server = InProcessServer(probe, tls=False).start()
    port = server.port
    with server.client() as client:
        assert client.get("/").status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError), httpx.Client(http1=False, http2=True) as client:
        client.get(f"http://127.0.0.1:{port}/")


def test_stop_lets_an_in_flight_request_finish() -> None:
    started = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            started.set()
            await trio.sleep(0.5)
            await respond(send, 200, b"finished")

    server = InProcessServer(slow, tls=False, options={"loop": "trio", "lifespan": "off"}).start()
    with RawH2(server.port) as raw:  # a client that keeps its stream across GOAWAY (httpx fails it)
        sid = raw.request("GET", "/")
        assert started.wait(10)
        server.stop()  # graceful: returns once the response in flight went out
        response = raw.response(sid)
    assert (response.status, response.body) == (200, b"finished")
    assert [g.error_code for g in raw.goaways][-1:] == [0]


def test_missing_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now raises ImportError
    server = InProcessServer(probe, tls=False)
    with pytest.raises(RuntimeError, match=r"h2gate\[testing\]"):
        server.client()
    assert "pip install 'h2gate[testing]'" in MISSING_EXTRAS


# -- async tests: pytest-trio and anyio ----------------------------------------------------------


@pytest.mark.trio
async def test_pytest_trio(h2gate_server: Factory) -> None:
    server = h2gate_server(probe)
    async with server.async_client() as client:
        response = await client.get("/trio")
    assert (response.http_version, response.json()["path"]) == ("HTTP/2", "/trio")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_anyio(h2gate_server: Factory, anyio_backend: str) -> None:
    server = h2gate_server(probe, tls=False, loop="trio" if anyio_backend == "trio" else "asyncio")
    async with server.async_client() as client:
        responses = [await client.get(f"/n/{i}") for i in range(3)]
    assert [r.json()["path"] for r in responses] == ["/n/0", "/n/1", "/n/2"]


# -- frameworks (the README examples) --------------------------------------------------------------


def test_starlette(h2gate_server: Factory) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def home(request: Any) -> JSONResponse:
        return JSONResponse({"http_version": request.scope["http_version"]})

    app = Starlette(routes=[Route("/", home)])
    server = h2gate_server(app)
    with server.client() as client:
        response = client.get("/")
    assert response.json() == {"http_version": "2"}


@pytest.fixture
def django_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """tests/djproject's ASGI application, imported into this process."""
    monkeypatch.syspath_prepend(str(TESTS / "djproject"))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.asgi import get_asgi_application

    yield get_asgi_application()


def test_django(h2gate_server: Factory, django_app: Any) -> None:
    server = h2gate_server(django_app)
    with server.client() as client:
        home = client.get("/")
        info = client.get("/info", params={"x": "1"})
    assert (home.http_version, home.status_code, home.text) == ("HTTP/2", 200, "django over h2gate")
    assert info.json()["scheme"] == "https" and info.json()["query"] == {"x": "1"}


# -- the plugin seen from outside: a logged ERROR fails the test ------------------------------------


def test_logged_error_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                if scope["path"] == "/boom":
                    raise RuntimeError("inner boom")
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})

            def test_fine(h2gate_server):
                with h2gate_server(app, tls=False).client() as client:
                    assert client.get("/").text == "ok"

            def test_app_error(h2gate_server):
                with h2gate_server(app, tls=False).client() as client:
                    assert client.get("/boom").status_code == 500
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "FAILED test_inner.py::test_app_error" in out, out
    assert "h2gate logged 1 error(s) during the test" in out and "inner boom" in out, out
