"""Server push (``http.response.push``): PUSH_PROMISE, the pushed response, and clients that refuse pushes."""

from __future__ import annotations

import json
import subprocess

import pytest
from h2.settings import SettingCodes

from tests.h2raw import RawH2

APP = "apps.ext:app"


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, serve):  # type: ignore[no-untyped-def]
    return serve(APP, "--loop", request.param)


def test_push_promise_and_pushed_response(server) -> None:
    with RawH2(server.port) as client:
        main = client.get("/push")
        assert main.status == 200
        assert len(client.pushes) == 1
        parent, promised, request = client.pushes[0]
        assert parent == main.stream_id and promised % 2 == 0
        assert (b":method", b"GET") in request and (b":path", b"/pushed.css") in request
        assert (b":authority", f"127.0.0.1:{server.port}".encode()) in request
        pushed = client.response(promised)
        assert pushed.status == 200
        assert pushed.body == b"body{} /* text/css */"
        assert client.get("/extensions").status == 200  # the connection carries on


def test_no_push_when_client_disables_it(server) -> None:
    with RawH2(server.port, settings={SettingCodes.ENABLE_PUSH: 0}) as client:
        assert "http.response.push" not in json.loads(client.get("/extensions").body)
        main = client.get("/push")
        assert main.status == 200 and client.pushes == []


def test_bad_push_is_an_app_error(server) -> None:
    with RawH2(server.port) as client:
        assert client.get("/push-bad").status == 500
    server.wait_for_log("http.response.push path must be a str starting with '/'")


def test_nghttp_sees_the_push(serve) -> None:
    server = serve(APP)
    out = subprocess.run(
        ["nghttp", "-nv", f"http://127.0.0.1:{server.port}/push"], capture_output=True, text=True, timeout=20
    ).stdout
    assert "recv PUSH_PROMISE frame" in out
    assert ":path: /pushed.css" in out
