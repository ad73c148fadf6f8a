"""Logging: --access-log-format atoms, --log-format json, log files, --log-config; units then the real server."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2gate.config import Config
from h2gate.errors import ConfigError
from h2gate.http.head import RequestHead
from h2gate.net.transport import CleartextTransport
from h2gate.observe.accesslog import DEFAULT_FORMAT, AccessFormat, Entry, default_line, seconds_text
from tests.conftest import h2c_client, tls_client

# -- units ---------------------------------------------------------------------------------------


class FakeExchange:
    stream_id = 3
    status = 404
    bytes_sent = 0
    reset_code = None
    cut = False
    response_ended = True
    head = RequestHead(
        method=b"GET", scheme=b"http", authority=b"example.test", target=b"/a?b=1", fields=[(b"user-agent", b"ua/1")]
    )
    response_headers = [(b":status", b"404"), (b"x-reason", b"missing")]


def entry(duration: float = 1.5) -> Entry:
    scope = {"method": "GET", "raw_path": b"/a", "query_string": b"b=1"}
    transport = CleartextTransport(None, ("192.0.2.1", 555), ("127.0.0.1", 80))  # type: ignore[arg-type]
    return Entry(transport, scope, FakeExchange(), duration)  # type: ignore[arg-type]


def test_default_format_is_the_config_default() -> None:
    assert Config().access_log_format == DEFAULT_FORMAT
    assert AccessFormat().line(entry(0.0123)) == '192.0.2.1:555 - "GET /a?b=1 HTTP/2" 404 0 0.012s stream=3'


OUTCOMES = [
    (404, None, True, False), (200, 8, False, False), (0, 8, False, False),
    (200, 8, True, False), (200, 8, False, True),
]  # fmt: skip


@pytest.mark.parametrize("query", [b"", b"b=1&c=%20"])
@pytest.mark.parametrize("with_scope", [True, False])
@pytest.mark.parametrize(("status", "reset", "ended", "cut"), OUTCOMES)
@pytest.mark.parametrize("peer", [("192.0.2.1", 555), ("/run/h2gate.sock", None), None])
def test_the_default_line_fast_path_is_the_format(
    query: bytes, with_scope: bool, status: int, reset: int | None, ended: bool, cut: bool, peer: Any
) -> None:
    exchange = FakeExchange()
    exchange.status, exchange.reset_code, exchange.response_ended = status, reset, ended  # type: ignore[misc]
    exchange.cut = cut
    scope = {"method": "GET", "raw_path": "/a/ü".encode(), "query_string": query} if with_scope else None
    transport = CleartextTransport(None, peer, ("127.0.0.1", 80))  # type: ignore[arg-type]
    slow = AccessFormat().line(Entry(transport, scope, exchange, 0.01234))  # type: ignore[arg-type]
    assert AccessFormat().direct is default_line and AccessFormat("%(h)s").direct is None
    assert default_line(transport, scope, exchange, 0.01234) == slow  # type: ignore[arg-type]
    assert default_line(transport, scope, exchange, 0.01234, "when [INFO] ") == "when [INFO] " + slow  # type: ignore[arg-type]
    assert default_line(transport, scope, exchange, 0.01234) == slow  # type: ignore[arg-type]  # (the peer's text, remembered)


@given(st.floats(min_value=0.0, max_value=100_000.0))
def test_the_duration_text_is_the_duration_to_the_millisecond(duration: float) -> None:
    """``%(L)s``: three decimals, rounded to the nearest millisecond; under a second it comes from a table."""
    text = seconds_text(duration)
    whole, _, fraction = text.partition(".")
    assert whole.isdigit() and len(fraction) == 3 and fraction.isdigit()
    assert abs(float(text) - duration) <= 0.0005 + 1e-9 * max(1.0, duration)
    if abs(duration * 1000.0 % 1.0 - 0.5) > 1e-6:  # away from a half millisecond, it is what %.3f says
        assert text == f"{duration:.3f}"


def test_gunicorn_atoms() -> None:
    fmt = AccessFormat("%(h)s %(l)s %(u)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(T)s %(D)s %(M)s %(L)s %%")
    assert fmt.line(entry()) == "192.0.2.1 - - GET /a b=1 HTTP/2 404 0 - 1 1500000 1500 1.500 %"


def test_header_and_own_atoms() -> None:
    fmt = AccessFormat(
        "%({User-Agent}i)s|%({host}i)s|%({missing}i)s|%({X-Reason}o)s|%(stream)s|%(alpn)s|%(scheme)s|%(tls)s"
    )
    assert fmt.line(entry()) == "ua/1|example.test|-|missing|3|-|http|-"
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", AccessFormat("%(t)s").line(entry()))


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%(h)s %(nope)s", r"unknown atom %\(nope\)s"),
        ("%(h)s %d", r"'%d' is not an atom"),
        ("100%", r"'%' is not an atom"),
        ("%({bad header}i)s", r"unknown atom %\(\{bad header\}i\)s"),
    ],
)
def test_bad_formats(fmt: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AccessFormat(fmt)


# -- the real server -----------------------------------------------------------------------------

FORMAT = (
    "A %(h)s %(m)s %(U)s q=%(q)s %(H)s %(s)s %(b)s ua=%({user-agent}i)s why=%({x-reason}o)s "
    "%(stream)s %(alpn)s %(scheme)s %(tls)s"
)


def test_custom_format_h2c(serve: Any) -> None:
    server = serve("apps.observe:app", "--access-log-format", FORMAT)
    with h2c_client() as client:
        client.get(f"{server.url}/missing?x=1", headers={"user-agent": "probe/2"})
    server.wait_for_log(r"A 127\.0\.0\.1 GET /missing q=x=1 HTTP/2 404 13 ua=probe/2 why=missing 1 - http -$")


def test_custom_format_tls(serve: Any, certs: Any) -> None:
    server = serve("apps.observe:app", "--access-log-format", FORMAT, tls=True)
    with tls_client(certs) as client:
        client.get(f"{server.url}/")
    server.wait_for_log(r"A 127\.0\.0\.1 GET / q= HTTP/2 200 2 ua=python-httpx/\S+ why=fine 1 h2 https TLSv1\.[23]$")


def test_default_line_and_no_access_log(serve: Any) -> None:
    server = serve("apps.observe:app")
    with h2c_client() as client:
        client.get(f"{server.url}/x?y=z")
    server.wait_for_log(r'\[INFO\] 127\.0\.0\.1:\d+ - "GET /x\?y=z HTTP/2" 200 2 \d+\.\d{3}s stream=1$')
    quiet = serve("apps.observe:app", "--no-access-log")
    with h2c_client() as client:
        client.get(f"{quiet.url}/quiet")
    quiet.stop()
    assert "/quiet" not in quiet.output


def test_bad_format_is_a_startup_error(serve: Any) -> None:
    server = serve("apps.observe:app", "--access-log-format", "%(h)s %(zz)s", wait=False)
    assert server.proc.wait(20) == 2  # a usage error
    server.wait_for_log(r"h2gate: error: --access-log-format: unknown atom %\(zz\)s")


def test_json_logs(serve: Any) -> None:
    server = serve("apps.observe:app", "--log-format", "json")
    with h2c_client() as client:
        client.get(f"{server.url}/missing", headers={"referer": "http://r.example/"})
    server.wait_for_log(r'"logger": "h2gate.access"')
    server.stop()
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert records and len(records) == len([line for line in server.lines if line.strip()])
    assert all({"timestamp", "level", "logger", "message"} <= set(r) for r in records)
    access = next(r for r in records if r["logger"] == "h2gate.access")
    assert access["level"] == "INFO" and '"GET /missing HTTP/2" 404' in access["message"]
    assert (access["method"], access["path"], access["status"], access["bytes_sent"]) == ("GET", "/missing", 404, 13)
    assert (access["remote_addr"], access["stream"], access["referer"], access["reset"]) == (
        "127.0.0.1",
        1,
        "http://r.example/",
        False,
    )
    assert any(r["logger"] == "h2gate.error" and "listening on" in r["message"] for r in records)


def wait_for_file(path: Path, pattern: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            found = re.search(pattern, path.read_text())
            if found:
                return found.group(0)
        time.sleep(0.05)
    raise TimeoutError(f"{pattern!r} not in {path}: {path.read_text() if path.exists() else '(missing)'}")


def test_log_files_and_rotation(serve: Any, tmp_path: Path) -> None:
    error_log, access_log = tmp_path / "error.log", tmp_path / "access.log"
    server = serve(
        "apps.observe:app", "--error-logfile", str(error_log), "--access-logfile", str(access_log), wait=False
    )
    url = wait_for_file(error_log, r"listening on (\S+)").split()[-1]
    with h2c_client() as client:
        client.get(f"{url}/one")
        wait_for_file(access_log, r'"GET /one HTTP/2" 200')
        access_log.rename(tmp_path / "access.log.1")  # what logrotate does
        client.get(f"{url}/two")
        wait_for_file(access_log, r'"GET /two HTTP/2" 200')
    assert "/one" not in access_log.read_text() and "/two" not in error_log.read_text()
    assert not [line for line in server.lines if "GET" in line or "listening" in line]  # nothing on stdout/stderr


def test_access_log_to_stdout(serve: Any, tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    server = serve("apps.observe:app", "--error-logfile", str(error_log), "--access-logfile", "-", wait=False)
    url = wait_for_file(error_log, r"listening on (\S+)").split()[-1]
    with h2c_client() as client:
        client.get(f"{url}/out")
    server.wait_for_log(r'"GET /out HTTP/2" 200')


LOG_CONFIG = {
    "version": 1,
    "formatters": {"mine": {"format": "MINE %(name)s %(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "filename": "", "formatter": "mine"}},
    "loggers": {"h2gate": {"handlers": ["file"], "level": "INFO", "propagate": False}},
}


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_log_config(serve: Any, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out.log"
    if kind == "json":
        config = tmp_path / "logging.json"
        conf = json.loads(json.dumps(LOG_CONFIG))
        conf["handlers"]["file"]["filename"] = str(out)
        config.write_text(json.dumps(conf))
    else:
        config = tmp_path / "logging.toml"
        config.write_text(
            "version = 1\n[formatters.mine]\nformat = 'MINE %(name)s %(message)s'\n"
            f"[handlers.file]\nclass = 'logging.FileHandler'\nfilename = '{out}'\nformatter = 'mine'\n"
            "[loggers.h2gate]\nhandlers = ['file']\nlevel = 'INFO'\npropagate = false\n"
        )
    serve("apps.observe:app", "--log-config", str(config), wait=False)
    url = wait_for_file(out, r"MINE h2gate.error listening on (\S+)").split()[-1]
    with h2c_client() as client:
        client.get(f"{url}/configured")
    wait_for_file(out, r'MINE h2gate.access 127\.0\.0\.1:\d+ - "GET /configured HTTP/2" 200')


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("log.yaml", "version: 1", "name a .json or .toml file"),
        ("log.json", "{not json", "not valid JSON"),
        ("log.json", '{"version": 1, "handlers": {"h": {"class": "no.Such"}}}', "Unable to configure handler 'h'"),
    ],
)
def test_bad_log_config(serve: Any, tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    server = serve("apps.observe:app", "--log-config", str(path), wait=False)
    assert server.proc.wait(20) == 1
    server.wait_for_log(f"h2gate: error: --log-config {re.escape(str(path))}: .*{message}")


def test_the_peer_text_cache_stays_bounded() -> None:
    from h2gate.observe import accesslog

    exchange = FakeExchange()
    for port in range(accesslog._PEER_TEXT_MAX + 500):  # a flood of one-request connections
        transport = CleartextTransport(None, ("192.0.2.7", port), ("127.0.0.1", 80))  # type: ignore[arg-type]
        line = default_line(transport, None, exchange, 0.0)  # type: ignore[arg-type]
        assert line.startswith(f"192.0.2.7:{port} - ")
        assert len(accesslog._peer_text) <= accesslog._PEER_TEXT_MAX


def test_the_time_prefix_follows_the_clock_both_ways() -> None:
    from h2gate.observe import logs

    def expected(second: int) -> str:
        return time.strftime(logs.TEXT_DATEFMT, time.localtime(second)) + " [INFO] "

    assert logs._text_prefix(1_000_000.25) == expected(1_000_000)
    assert logs._text_prefix(1_000_000.75) == expected(1_000_000)  # (the cached one)
    assert logs._text_prefix(1_000_001.0) == expected(1_000_001)
    assert logs._text_prefix(999_999.5) == expected(999_999)  # the clock stepped back
