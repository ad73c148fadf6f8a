"""WSGI over HTTP/2 against a real server: environ, wsgi.input, start_response/write, faults, detection.

The app is wrapped in wsgiref's validator and the server runs with validator
warnings turned into errors, so a PEP 3333 violation by the server shows up as
a failed request plus a traceback in the log, which the module fixture checks for.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes

from tests.conftest import TESTS, Certs, ServerProcess, h2c_client, tls_client
from tests.h2raw import RawH2

STRICT = {"PYTHONWARNINGS": "error::wsgiref.validate.WSGIWarning"}
#: the validator's wrapper takes (*args): its interface cannot be read off the signature
VALIDATED = ("apps.wsgi_apps:app", "--interface", "wsgi")
#: log lines the /exc-after and /raise-after-close-body requests cause on purpose
EXPECTED_ERRORS = ("too late", "body failed")


def problems(output: str) -> list[str]:
    """Error lines and tracebacks not caused on purpose (validator assertions/warnings included)."""
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:)", output) if output else []
    bad = []
    for block in blocks:
        if ("[ERROR]" in block or "Traceback" in block or "Warning" in block) and not any(
            e in block for e in EXPECTED_ERRORS
        ):
            bad.append(block)
    return bad


@pytest.fixture(scope="module")
def wsgi() -> Iterator[ServerProcess]:
    server = ServerProcess([*VALIDATED, "-b", "127.0.0.1:0"], env=STRICT).wait_ready()
    yield server
    assert server.stop() == 0, server.output
    assert problems(server.output) == [], server.output
    assert "internal error on a connection" not in server.output


@pytest.fixture(scope="module")
def raw_app() -> Iterator[ServerProcess]:
    server = ServerProcess(["apps.wsgi_apps:raw", "-b", "127.0.0.1:0"]).wait_ready()
    yield server
    assert server.stop() == 0, server.output
    assert "internal error on a connection" not in server.output


def test_validator_warnings_fail_the_request(serve) -> None:
    """The harness works: a validator warning in the server process becomes a 500 and a logged traceback."""
    server = serve(*VALIDATED, env=STRICT)
    with h2c_client() as client:
        assert client.get(server.url + "/validator-warns").status_code == 500
    server.wait_for_log("WSGIWarning")
    assert problems(server.output)


def test_startup_line_says_wsgi(wsgi: ServerProcess) -> None:
    assert "serving WSGI app apps.wsgi_apps:app (10 worker threads)" in wsgi.output


# -- environ ------------------------------------------------------------------------------------------


def test_environ_keys(wsgi: ServerProcess) -> None:
    with RawH2(wsgi.port) as raw:
        r = raw.get(
            "/environ/caf%C3%A9%2Fx?a=1&b=%20",
            method="POST",
            headers=[
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"x-multi", b"one"),
                (b"x-multi", b"two"),
                (b"content-type", b"text/plain"),
                (b"content-length", b"3"),
                (b"x_sneaky", b"dropped"),
            ],
            body=b"abc",
        )
        client_port = raw.local_address[1]
    assert r.status == 200, r.body
    env = json.loads(r.body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # percent-decoded, then bytes as latin-1 (PEP 3333): %2F decodes to "/" too
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/x"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(wsgi.port)
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi.port}"
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"
    assert "HTTP_X_SNEAKY" not in env
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False and env["wsgi.run_once"] is False


def test_environ_root_path_and_tls(serve, certs: Certs) -> None:
    server = serve(*VALIDATED, "--root-path", "/mount", tls=True, env=STRICT)
    with tls_client(certs) as client:
        url = server.url.replace("127.0.0.1", "localhost")
        env = client.get(url + "/mount/environ").json()
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mount", "/environ")
        assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
        assert env["SERVER_NAME"] == "localhost"
        # not below the root path: SCRIPT_NAME is still the mount point, PATH_INFO untouched
        other = client.get(url + "/mountain")
        assert other.status_code == 404
    assert problems(server.output) == []


# -- wsgi.input -----------------------------------------------------------------------------------------

BODY = b"".join(f"line {i} ".encode() * (i % 7) + b"\n" for i in range(3000)) + b"no newline at the end"


@pytest.mark.parametrize(
    "mode", ["read_n", "read_big", "read_all", "readline", "readline_hint", "readlines", "readlines_hint", "iter"]
)
def test_input_methods_at_chunk_boundaries(wsgi: ServerProcess, mode: str) -> None:
    with RawH2(wsgi.port) as client:
        sid = client.request("POST", f"/read?mode={mode}", end_stream=False)
        pos, size = 0, 1
        while pos < len(BODY):  # odd-sized DATA frames: 1, 4, 9, ... bytes, up to 16 KB
            piece = memoryview(BODY)[pos : pos + min(size, 16_000)]
            sent = client.send_body(sid, piece)
            if not sent:
                client.pump(0.1)
            pos += sent
            size = size * 3 + 1
        client.h2.end_stream(sid)
        client.flush()
        result = client.response(sid)
    assert result.status == 200, result.data
    info = json.loads(result.data)
    assert info["length"] == len(BODY)
    assert info["sha256"] == hashlib.sha256(BODY).hexdigest()
    pieces = info["pieces"]
    if mode == "read_n":
        assert set(pieces[:-1]) == {7}
    elif mode in ("readline", "readlines", "iter"):
        assert len(pieces) == 3001
    elif mode == "readline_hint":
        assert max(pieces) == 5


def test_input_client_reset_raises_oserror(wsgi: ServerProcess) -> None:
    key = uuid.uuid4().hex
    with RawH2(wsgi.port) as client:
        sid = client.request("POST", f"/wait-input?key={key}", body=b"x" * 1000, end_stream=False)
        wsgi.wait_for_log(f"wsgi-app: {key} received 1000 bytes")
        client.reset(sid)
        line = wsgi.wait_for_log(f"wsgi-app: {key} input failed")
        assert "ClientDisconnected oserror=True" in line
        assert client.get("/environ").status == 200


# -- start_response, write(), exc_info, close() ----------------------------------------------------------


def test_write_and_iterable(wsgi: ServerProcess) -> None:
    with h2c_client() as client:
        r = client.get(wsgi.url + "/write")
    assert r.text == "written 0\nwritten 1\nwritten 2\nreturned\n"


def test_exc_info_before_headers_replaces_the_response(wsgi: ServerProcess) -> None:
    with h2c_client() as client:
        r = client.get(wsgi.url + "/exc-before")
    assert (r.status_code, r.text) == (503, "replaced")


def test_exc_info_after_headers_reraises_and_resets(wsgi: ServerProcess) -> None:
    with RawH2(wsgi.port) as raw:
        r = raw.get("/exc-after")
    assert r.status == 200 and r.body == b"partial"
    assert r.reset == ErrorCodes.INTERNAL_ERROR
    wsgi.wait_for_log("ValueError: too late")


def test_close_called_on_client_reset(wsgi: ServerProcess) -> None:
    key = uuid.uuid4().hex
    with RawH2(wsgi.port) as client:
        sid = client.request("GET", f"/slow-gen?key={key}", keep_data=False)
        client.wait_for(lambda: client.streams[sid].received > 100_000, what="some body")
        client.reset(sid)
        wsgi.wait_for_log(f"wsgi-app: {key} closed")
        wsgi.wait_for_log(rf'"GET /slow-gen\?key={key} HTTP/2" 200 reset')


def test_close_called_when_body_raises(wsgi: ServerProcess) -> None:
    key = uuid.uuid4().hex
    with RawH2(wsgi.port) as raw:
        r = raw.get(f"/raise-after-close-body?key={key}")
    assert r.body == b"first" and r.reset == ErrorCodes.INTERNAL_ERROR
    wsgi.wait_for_log(f"wsgi-app: {key} closed")


# -- content-length and file_wrapper ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "length", "body"),
    [("list1", "5", b"hello"), ("list3", "6", b"abbccc"), ("empty", "0", b""), ("gen", None, b"abbccc")],
)
def test_content_length_rules(raw_app: ServerProcess, kind: str, length: str | None, body: bytes) -> None:
    with RawH2(raw_app.port) as raw:
        r = raw.get(f"/cl?kind={kind}")
    headers = dict(r.headers)
    assert headers.get(b"content-length") == (length.encode() if length else None)
    assert r.body == body and r.ended
    if kind == "list1":
        assert r.data_events == 1  # HEADERS + one DATA(END_STREAM)


@pytest.mark.parametrize("app", ["app", "raw"])
def test_file_wrapper_streams_a_file(serve, app: str) -> None:
    server = serve(f"apps.wsgi_apps:{app}", "--interface", "wsgi", env=STRICT)
    size = 5 * 1024 * 1024 + 123
    with h2c_client() as client:
        r = client.get(server.url + f"/file?size={size}")
    assert r.status_code == 200 and len(r.content) == size
    assert r.content[(1 << 20) + 5] == 1
    if app == "raw":  # the validator hides the wrapper; unwrapped, the file's size is known
        assert r.headers["content-length"] == str(size)
    assert problems(server.output) == []


# -- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "log"),
    [
        ("/fault/before", "RuntimeError: app failed before responding"),
        ("/fault/status", "start_response() status 'OK' is not"),
        ("/fault/header", "('X-Count', 1) must be a pair of str"),
        ("/fault/no-start", "the app returned a body before calling start_response()"),
    ],
)
def test_faults_before_headers_are_500(raw_app: ServerProcess, path: str, log: str) -> None:
    with h2c_client() as client:
        r = client.get(raw_app.url + path)
        assert (r.status_code, r.text) == (500, "Internal Server Error\n")
        assert client.get(raw_app.url + "/environ").status_code == 200
    line = raw_app.wait_for_log(f"GET {path}: ")
    assert "[ERROR]" in line
    raw_app.wait_for_log(re.escape(log))


def test_fault_after_headers_is_reset(raw_app: ServerProcess) -> None:
    with RawH2(raw_app.port) as raw:
        r = raw.get("/fault/after")
        assert r.status == 200 and r.body == b"some" and r.reset == ErrorCodes.INTERNAL_ERROR
        assert raw.get("/environ").status == 200
    raw_app.wait_for_log("RuntimeError: app failed mid-body")
    raw_app.wait_for_log(r'"GET /fault/after HTTP/2" 200 reset')


# -- threads ----------------------------------------------------------------------------------------


def test_thread_pool_bounds_concurrent_app_calls(serve) -> None:
    """--threads 2: four streams at once run two at a time; the trio loop keeps answering meanwhile."""
    server = serve(*VALIDATED, "--threads", "2", env=STRICT)
    assert "(2 worker threads)" in server.output
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sids = [client.request("GET", f"/hold?key={key}&n={i}&t=1") for i in range(4)]
        server.wait_for_log(f"wsgi-app: {key} started")
        client.ping(b"12345678")  # both threads are asleep in the app: the server still answers
        client.wait_for(lambda: client.pings_acked == [b"12345678"], timeout=0.9, what="PING ACK")
        for sid in sids:
            assert client.response(sid).status == 200
    events = [line.split(f"{key} ")[1] for line in server.lines if f"wsgi-app: {key}" in line]
    running = peak = 0
    for event in events:
        running += 1 if event.startswith("started") else -1
        peak = max(peak, running)
    assert peak == 2, events
    assert problems(server.output) == []


def test_graceful_shutdown_lets_a_wsgi_call_finish(serve) -> None:
    server = serve(*VALIDATED, env=STRICT)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sid = client.request("GET", f"/hold?key={key}&n=7&t=1")
        server.wait_for_log(f"wsgi-app: {key} started 7")
        server.send_signal()
        result = client.response(sid)
        assert (result.status, bytes(result.data)) == (200, b"7")
    assert server.stop() == 0
    assert problems(server.output) == []


# -- interface detection --------------------------------------------------------------------------------


def h2gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h2gate", *args, "-b", "127.0.0.1:0"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize("spec", ["apps.wsgi_apps:no_args", "apps.wsgi_apps:ambiguous", "apps.wsgi_apps:app"])
def test_detection_failure_is_one_clear_line(spec: str) -> None:
    result = h2gate(spec)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot tell whether" in lines[0] and "--interface asgi or --interface wsgi" in lines[0]


def test_detection_is_overridden_by_interface_flag(serve) -> None:
    server = serve("apps.wsgi_apps:raw", "--interface", "wsgi")
    assert "serving WSGI app" in server.output
    asgi = serve("apps.basic:app", "--interface", "asgi")
    assert "serving ASGI app" in asgi.output


def test_detection_does_not_call_the_app() -> None:
    from h2gate.ops.appload import detect_interface

    class Flaskish:
        def __call__(self, environ: object, start_response: object) -> object:
            raise AssertionError("called")

    class ASGI3:
        async def __call__(self, scope: object, receive: object, send: object) -> None:
            raise AssertionError("called")

    class ASGI2:
        def __init__(self, scope: object) -> None:
            raise AssertionError("called")

    class WSGIClass:
        def __init__(self, environ: object, start_response: object) -> None:
            raise AssertionError("called")

    async def asgi_fn(scope: object, receive: object, send: object) -> None:
        raise AssertionError("called")

    def wsgi_fn(environ: object, start_response: object) -> object:
        raise AssertionError("called")

    assert detect_interface(Flaskish(), "x") == "wsgi"
    assert detect_interface(wsgi_fn, "x") == "wsgi"
    assert detect_interface(WSGIClass, "x") == "wsgi"
    assert detect_interface(ASGI3(), "x") == "asgi"
    assert detect_interface(asgi_fn, "x") == "asgi"
    assert detect_interface(ASGI2, "x") == "asgi"
