"""Real WSGI frameworks over real HTTP/2: Flask and a Django project, driven by httpx and curl.

Both apps run inside wsgiref's validator with its warnings turned into errors,
so any PEP 3333 slip by the server fails a request and leaves a traceback the
module fixtures check for.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import TESTS, ServerProcess, h2c_client
from tests.wsgi.test_wsgi import STRICT, problems

DJANGO_DIR = TESTS / "djproject"
UPLOAD = 200 * 1024 * 1024


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--http2-prior-knowledge", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def flask() -> Iterator[ServerProcess]:
    server = ServerProcess(["apps.flaskapp:app", "-b", "127.0.0.1:0"], env=STRICT).wait_ready()
    yield server
    assert server.stop() == 0, server.output
    assert problems(server.output) == [], server.output


@pytest.fixture(scope="module")
def django() -> Iterator[ServerProcess]:
    args = ["mysite.wsgi:validated", "--interface", "wsgi", "--app-dir", str(DJANGO_DIR), "-b", "127.0.0.1:0"]
    server = ServerProcess(args, env={**STRICT, "DJANGO_SETTINGS_MODULE": "mysite.settings"}).wait_ready()
    yield server
    assert server.stop() == 0, server.output
    assert problems(server.output) == [], server.output


# -- Flask ----------------------------------------------------------------------------------------------


def test_flask_is_detected_as_wsgi(flask: ServerProcess) -> None:
    assert "serving WSGI app apps.flaskapp:app" in flask.output


def test_flask_pages_forms_json_cookies_redirects(flask: ServerProcess) -> None:
    with h2c_client(base_url=flask.url) as client:
        home = client.get("/")
        assert (home.http_version, home.status_code, home.text) == ("HTTP/2", 200, "flask over h2gate")
        assert client.post("/form", data={"a": "1", "b": "two words"}).json() == {"a": "1", "b": "two words"}
        got = client.post("/json", json={"x": [1, 2]}).json()
        assert got == {"got": {"x": [1, 2]}, "scheme": "http", "host": flask.url.split("//")[1]}
        assert client.get("/cookie/set").text == "set"
        assert client.get("/cookie/get").json() == {"flavour": "oatmeal", "size": "large"}
        moved = client.get("/redirect")
        assert moved.status_code == 302 and moved.headers["location"] == "/"
        assert client.get("/redirect", follow_redirects=True).text == "flask over h2gate"
        assert client.get("/nope").status_code == 404


def test_flask_large_streamed_upload(flask: ServerProcess) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    for _ in range(UPLOAD // len(block)):
        digest.update(block)

    def body() -> Iterator[bytes]:
        for _ in range(UPLOAD // len(block)):
            yield block

    started = time.monotonic()
    with h2c_client(base_url=flask.url) as client:
        client.timeout = 60  # type: ignore[assignment]
        r = client.post("/upload", content=body(), headers={"content-type": "application/octet-stream"})
    assert r.json() == {"length": UPLOAD, "sha256": digest.hexdigest()}
    assert time.monotonic() - started < 40


def test_flask_generator_and_send_file(flask: ServerProcess) -> None:
    file_size = 3 * 1024 * 1024 + 17  # apps.flaskapp.FILE_SIZE
    with h2c_client(base_url=flask.url) as client:
        streamed = client.get("/stream")
        assert streamed.text == "".join(f"chunk {i}\n" for i in range(100))
        assert "content-length" not in streamed.headers
        f = client.get("/file")
    assert f.status_code == 200 and int(f.headers["content-length"]) == file_size == len(f.content)
    assert f.content[:256] == bytes(range(256))


def test_flask_with_curl(flask: ServerProcess) -> None:
    out = curl("-i", flask.url + "/")
    assert out.stdout.startswith("HTTP/2 200") and out.stdout.endswith("flask over h2gate")
    form = curl(flask.url + "/form", "-d", "name=h2gate", "-d", "kind=server")
    assert json.loads(form.stdout) == {"name": "h2gate", "kind": "server"}
    jar = curl("-c", "-", flask.url + "/cookie/set").stdout
    assert "flavour\toatmeal" in jar


# -- Django ---------------------------------------------------------------------------------------------


def test_django_wsgi_is_detected() -> None:
    """The plain startproject ``application`` is recognised as WSGI without --interface."""
    server = ServerProcess(
        ["mysite.wsgi:application", "--app-dir", str(DJANGO_DIR), "-b", "127.0.0.1:0"],
        env={"DJANGO_SETTINGS_MODULE": "mysite.settings"},
    ).wait_ready()
    try:
        assert "serving WSGI app mysite.wsgi:application" in server.output
        assert curl(server.url + "/").stdout == "django over h2gate"
    finally:
        assert server.stop() == 0


def test_django_view_and_info(django: ServerProcess) -> None:
    with h2c_client(base_url=django.url) as client:
        assert client.get("/").text == "django over h2gate"
        info = client.get("/info", params={"x": "1"}, headers={"cookie": "a=1; b=2"}).json()
    port = django.url.rsplit(":", 1)[1]
    assert info == {
        "method": "GET",
        "path": "/info",
        "query": {"x": "1"},
        "scheme": "http",
        "host": f"127.0.0.1:{port}",
        "server_port": port,
        "cookies": {"a": "1", "b": "2"},
        "remote_addr": "127.0.0.1",
    }


def test_django_form_post_with_csrf_round_trip(django: ServerProcess) -> None:
    with h2c_client(base_url=django.url) as client:
        page = client.get("/form")
        token = re.search(r'value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert "csrftoken" in client.cookies
        ok = client.post("/form", data={"csrfmiddlewaretoken": token, "name": "h2gate"})
        assert (ok.status_code, ok.json()) == (200, {"name": "h2gate"})
        client.cookies.clear()
        assert client.post("/form", data={"csrfmiddlewaretoken": token}).status_code == 403


def test_django_file_upload(django: ServerProcess) -> None:
    payload = bytes(range(256)) * 20_000  # 5 MB: beyond Django's in-memory limit, so a temp file
    with h2c_client(base_url=django.url) as client:
        r = client.post("/upload", files={"doc": ("data.bin", payload)}, data={"note": "hi"})
    assert r.json() == {
        "files": {"doc": {"name": "data.bin", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}},
        "fields": {"note": "hi"},
    }
    out = curl(django.url + "/upload", "-F", "doc=@" + str(DJANGO_DIR / "mysite" / "urls.py"), "-F", "note=curl")
    assert json.loads(out.stdout)["files"]["doc"]["name"] == "urls.py"


def test_django_streaming_and_file_responses(django: ServerProcess) -> None:
    with h2c_client(base_url=django.url) as client:
        rows = client.get("/streaming")
        assert rows.text == "".join(f"row {i}\n" for i in range(1000))
        f = client.get("/file")
        assert f.content == b"0123456789" * 200_000
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", django.url + "/file"], capture_output=True, timeout=30
    )
    assert out.stdout == b"0123456789" * 200_000
