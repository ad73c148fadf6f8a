"""App faults end to end: every way an ASGI app can break its response, seen from real HTTP/2 clients.

Each fault is followed by a good request on the same connection, so a fault that
broke the connection (or the server) fails the test. Status and body are
checked with httpx; RST_STREAM error codes with :class:`tests.h2raw.RawH2`,
the suite's raw HTTP/2 client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes

from tests.conftest import ServerProcess, h2c_client
from tests.h2raw import RawH2

INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR


# -- servers ---------------------------------------------------------------------------------


def start_server(app: str, *flags: str, env: dict[str, str] | None = None) -> ServerProcess:
    return ServerProcess([app, "-b", "127.0.0.1:0", *flags], env).wait_ready()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def faults(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The faults app, once per app loop for the whole module."""
    server = start_server("apps.faults:app", "--loop", request.param)
    yield server
    assert server.stop() == 0, server.output
    assert "internal error on a connection" not in server.output
    assert "Unhandled exception" not in server.output


def log_line(server: ServerProcess, pattern: str) -> str:
    return server.wait_for_log(pattern)


def assert_healthy(raw: RawH2) -> None:
    """A good request on the same connection still works after the fault."""
    ok = raw.get("/ok")
    assert (ok.status, ok.body, ok.ended, ok.reset) == (200, b"ok", True, None)


# -- exceptions and early returns ------------------------------------------------------------


def test_exception_before_start_is_500_with_traceback(faults: ServerProcess) -> None:
    with h2c_client() as client:
        r = client.get(faults.url + "/raise-before-start")
        assert r.status_code == 500
        assert r.text == "Internal Server Error\n"
        assert r.headers["content-length"] == str(len(r.content))
        assert client.get(faults.url + "/ok").text == "ok"
    log_line(faults, r"\[ERROR\] GET /raise-before-start: exception in the app")
    log_line(faults, r"Traceback \(most recent call last\)")
    log_line(faults, r"RuntimeError: boom before start")


def test_app_raising_systemexit_is_500_and_server_lives(faults: ServerProcess) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get("/raise-systemexit")
        assert (r.status, r.body) == (500, b"Internal Server Error\n")
        assert_healthy(raw)
    log_line(faults, r"\[ERROR\] GET /raise-systemexit: the app raised SystemExit\(3\); answered 500")


def test_exception_after_start_before_body_is_clean_500(faults: ServerProcess) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get("/raise-after-start")
        assert (r.status, r.ended, r.reset) == (500, True, None)
        assert r.body == b"Internal Server Error\n"
        # the 500 is the server's own: none of the app's unsent headers leak into it
        assert r.header(b"content-type") == b"text/plain; charset=utf-8"
        assert_healthy(raw)
    log_line(faults, r"GET /raise-after-start: exception in the app")
    log_line(faults, r"RuntimeError: boom after start")


def test_exception_after_body_started_is_rst_internal_error(faults: ServerProcess) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get("/raise-after-body")
        assert r.status == 200
        assert r.body == b"partial"
        assert not r.ended
        assert r.reset == INTERNAL_ERROR
        assert_healthy(raw)
    log_line(faults, r"GET /raise-after-body: exception in the app")
    log_line(faults, r"RuntimeError: boom after body")


def test_return_without_response_is_500(faults: ServerProcess) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get("/no-response")
        assert (r.status, r.body, r.reset) == (500, b"Internal Server Error\n", None)
        assert_healthy(raw)
    log_line(faults, r"\[ERROR\] GET /no-response: the app returned without sending a response")


def test_return_mid_body_is_rst_internal_error(faults: ServerProcess) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get("/return-mid-body")
        assert (r.status, r.body, r.ended, r.reset) == (200, b"partial", False, INTERNAL_ERROR)
        assert_healthy(raw)
    log_line(faults, r"\[ERROR\] GET /return-mid-body: the app returned before finishing the response body")


def test_faults_keep_httpx_connection_usable(faults: ServerProcess) -> None:
    """httpx sees a reset stream as an error, and its next request reuses the same connection."""
    import httpx

    with h2c_client() as client:
        first = client.get(faults.url + "/ok")
        with pytest.raises(httpx.HTTPError):
            client.get(faults.url + "/raise-after-body")
        again = client.get(faults.url + "/ok")
        assert again.text == "ok"
        assert again.extensions["network_stream"] is first.extensions["network_stream"]


# -- invalid messages --------------------------------------------------------------------------

# path -> regex the error log line must match (it names the mistake)
MISTAKES_BEFORE_HEADERS = {
    "/status-str": r"invalid status '200'",
    "/status-99": r"invalid status 99\b",
    "/status-1000": r"invalid status 1000\b",
    "/status-bool": r"invalid status True\b",
    "/header-name-str": r"header \('x-name', b'v'\) must be a pair of byte strings",
    "/header-value-str": r"header \(b'x-value', 'v'\) must be a pair of byte strings",
    "/header-triple": r"header \(b'x-a', b'1', b'2'\) is not a \[name, value\] pair",
    "/header-not-pair": r"header b'x-a' is not a \[name, value\] pair",
    "/headers-not-list": r"headers must be an iterable",
    "/header-crlf": r"header value .*x-split.* (CR|LF|NUL|not allowed)",
    "/header-space-name": r"header name b'bad name'",
    "/header-pseudo": r"header name b':status'",
    "/start-twice": r"http.response.start sent twice",
    "/body-before-start": r"http.response.body sent before http.response.start",
    "/unknown-type": r"unexpected ASGI message type 'http.response.bogus'",
    "/unknown-type-after-start": r"unexpected ASGI message type 'http.response.bogus'",
    "/not-a-dict": r"unexpected ASGI message type None",
    "/body-str": r"body must be bytes, not str",
    "/cl-longer": r"longer than its content-length \(3\)",
    "/cl-shorter": r"ended after 3 bytes, short of its content-length \(10\)",
    "/cl-not-a-number": r"content-length b'ten' is not a number",
}


@pytest.mark.parametrize("path", sorted(MISTAKES_BEFORE_HEADERS))
def test_invalid_message_before_headers_is_500(faults: ServerProcess, path: str) -> None:
    with RawH2(faults.port) as raw:
        r = raw.get(path)
        assert (r.status, r.body, r.ended, r.reset) == (500, b"Internal Server Error\n", True, None)
        assert_healthy(raw)
    line = log_line(faults, rf"\[ERROR\] GET {re.escape(path)}: ASGI error in the app: ")
    assert re.search(MISTAKES_BEFORE_HEADERS[path], line), line


MISTAKES_AFTER_BODY = {
    "/body-str-after-body": (b"partial", r"body must be bytes, not str"),
    "/cl-longer-streamed": (b"abc", r"longer than its content-length \(5\)"),
    "/cl-longer-mid-chunk": (b"abcde", r"longer than its content-length \(7\)"),
    "/cl-shorter-streamed": (b"abc", r"ended after 5 bytes, short of its content-length \(10\)"),
}


@pytest.mark.parametrize("path", sorted(MISTAKES_AFTER_BODY))
def test_invalid_message_after_body_is_rst(faults: ServerProcess, path: str) -> None:
    sent, pattern = MISTAKES_AFTER_BODY[path]
    with RawH2(faults.port) as raw:
        r = raw.get(path)
        assert (r.status, r.body, r.ended, r.reset) == (200, sent, False, INTERNAL_ERROR)
        assert_healthy(raw)
    line = log_line(faults, rf"\[ERROR\] GET {re.escape(path)}: ASGI error in the app: ")
    assert re.search(pattern, line), line


def test_body_after_response_ended(faults: ServerProcess) -> None:
    """The client already has a complete response; the mistake is logged and nothing else breaks."""
    with RawH2(faults.port) as raw:
        r = raw.get("/body-after-end")
        assert (r.status, r.body, r.ended, r.reset) == (200, b"done", True, None)
        assert_healthy(raw)
    log_line(faults, r"\[ERROR\] GET /body-after-end: ASGI error in the app: .*after the response was complete")


# -- header hygiene and HEAD -------------------------------------------------------------------


HTTP1_ONLY = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te")


def test_http1_headers_dropped_with_warning(faults: ServerProcess) -> None:
    with h2c_client() as client:
        r = client.get(faults.url + "/hop-by-hop")
        assert r.status_code == 200
        assert r.text == "still fine"
        for name in HTTP1_ONLY:
            assert name not in r.headers
        assert r.headers["x-custom-header"] == "Mixed-Case-Value"
        assert r.headers["x-padded"] == "padded value"
        assert r.headers["content-type"] == "text/plain"
        assert client.get(faults.url + "/ok").text == "ok"
    with RawH2(faults.port) as raw:
        names = [k for k, _ in raw.get("/hop-by-hop").headers]
        assert b"x-custom-header" in names
        assert all(k == k.lower() for k in names)
    for name in HTTP1_ONLY:
        log_line(faults, rf"\[WARNING\] dropping response header '{name}': it has no meaning in HTTP/2")
    # Three responses later, still one warning per name (sse-starlette sets Connection on every stream).
    with h2c_client() as client:
        for _ in range(3):
            assert client.get(faults.url + "/hop-by-hop").text == "still fine"
    for name in HTTP1_ONLY:
        assert faults.output.count(f"[WARNING] dropping response header '{name}'") == 1, name


@pytest.mark.parametrize("path", ["/head", "/head-streamed"])
def test_head_has_headers_but_no_body(faults: ServerProcess, path: str) -> None:
    with RawH2(faults.port) as raw:
        get = raw.get(path)
        head = raw.get(path, method="HEAD")
        assert (get.status, get.body) == (200, b"hello world")
        assert (head.status, head.body, head.data_events, head.ended, head.reset) == (200, b"", 0, True, None)
        assert head.header(b"content-length") == get.header(b"content-length") == b"11"
        assert head.header(b"content-type") == get.header(b"content-type") == b"text/plain"
        assert_healthy(raw)
    assert not re.search(rf"\] (GET|HEAD) {re.escape(path)}:", faults.output), faults.output


def test_head_streamed_without_length(faults: ServerProcess) -> None:
    with h2c_client() as client:
        get = client.get(faults.url + "/head-no-length")
        head = client.head(faults.url + "/head-no-length")
        assert get.content == b"abcdef"
        assert (head.status_code, head.content, head.headers["x-kind"]) == (200, b"", "streamed")
    assert "/head-no-length:" not in faults.output


# -- one connection survives a run of faults ---------------------------------------------------


def test_many_faults_on_one_connection(faults: ServerProcess) -> None:
    """Interleave every fault with good requests, several in flight at once, on one connection."""
    paths = sorted(MISTAKES_BEFORE_HEADERS) + sorted(MISTAKES_AFTER_BODY) + ["/raise-after-body", "/no-response"]
    with RawH2(faults.port) as raw:
        sids = []
        for path in paths:
            sids.append(raw.request("GET", path))
            sids.append(raw.request("GET", "/ok"))
        for sid in sids:
            raw.response(sid)
        for path, sid in zip(paths, sids[0::2], strict=True):
            r = raw.streams[sid]
            assert r.status in (200, 500), (path, r)
            assert r.reset in (None, INTERNAL_ERROR), (path, r)
        for sid in sids[1::2]:
            assert raw.streams[sid].body == b"ok"
        assert_healthy(raw)
