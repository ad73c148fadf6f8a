"""``python -m h2gate.healthcheck`` against a real h2gate over h2c and TLS, and against things that are not h2gate."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.cli.test_cli import run_h2gate
from tests.conftest import ROOT, Certs, ServerProcess

Serve = Callable[..., ServerProcess]


def healthcheck(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the probe as the container does: a fresh interpreter, only its exit code and one line matter."""
    return run_h2gate(*args, env=env, cwd=ROOT, module="h2gate.healthcheck", timeout=timeout)


def test_h2c_ok_and_the_request_is_logged(serve: Serve) -> None:
    server = serve("apps.basic:app")
    result = healthcheck(server.url + "/health")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"healthy: 200 from {server.url}/health"
    server.wait_for_log(r'"GET /health HTTP/2" 200')
    assert healthcheck("-q", server.url).stdout == ""


def test_error_statuses_are_unhealthy(serve: Serve) -> None:
    server = serve("apps.ext:app")
    assert healthcheck(server.url + "/extensions").returncode == 0
    missing = healthcheck(server.url + "/missing")
    assert missing.returncode == 1
    assert "unhealthy: 404" in missing.stderr
    faults = serve("apps.faults:app")
    broken = healthcheck(faults.url + "/raise-before-start")
    assert broken.returncode == 1
    assert "unhealthy: 500" in broken.stderr


def test_informational_response_is_skipped_for_the_final_one(serve: Serve) -> None:
    server = serve("apps.ext:app")
    result = healthcheck(server.url + "/hints")
    assert result.returncode == 0, result.stderr
    assert "healthy: 200" in result.stdout


def test_tls_verifies_with_cafile_or_is_told_not_to(serve: Serve, certs: Certs) -> None:
    server = serve("apps.basic:app", tls=True)
    assert server.url.startswith("https://")
    ok = healthcheck("--cafile", certs.ca_pem, server.url)
    assert ok.returncode == 0, ok.stderr
    untrusted = healthcheck(server.url)
    assert untrusted.returncode == 1
    assert "TLS failed" in untrusted.stderr and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert healthcheck("--insecure", server.url).returncode == 0


def test_url_from_environment(serve: Serve, certs: Certs) -> None:
    cleartext = serve("apps.basic:app")
    ok = healthcheck(env={"H2GATE_BIND": f"unix:/nonexistent.sock,0.0.0.0:{cleartext.port}"})
    assert ok.returncode == 0, ok.stderr
    assert f"from http://127.0.0.1:{cleartext.port}/" in ok.stdout
    tls = serve("apps.basic:app", tls=True)
    env = {"H2GATE_BIND": f"127.0.0.1:{tls.port}", "H2GATE_CERTFILE": certs.cert_pem, "H2GATE_KEYFILE": certs.key_pem}
    ok = healthcheck(env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"from https://127.0.0.1:{tls.port}/" in ok.stdout


def test_environment_without_tcp_bind_or_invalid() -> None:
    unix_only = healthcheck(env={"H2GATE_BIND": "unix:/run/h2gate.sock"})
    assert unix_only.returncode == 1
    assert "no TCP bind" in unix_only.stderr
    bad = healthcheck(env={"H2GATE_GRACEFUL_TIMEOUT": "soon"})
    assert bad.returncode == 1
    assert "H2GATE_GRACEFUL_TIMEOUT" in bad.stderr


@pytest.fixture
def http1_server() -> Iterator[int]:
    """A plain HTTP/1.1 server (what a kubelet httpGet probe expects), not speaking HTTP/2."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_http1_only_server_is_unhealthy(http1_server: int) -> None:
    result = healthcheck(f"http://127.0.0.1:{http1_server}/")
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: ")


def test_refused_and_bad_urls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    refused = healthcheck(f"http://127.0.0.1:{port}/")
    assert refused.returncode == 1
    assert "cannot connect" in refused.stderr
    for url in ("ftp://127.0.0.1/", "http:///nohost", "http://127.0.0.1:99999/"):
        result = healthcheck(url)
        assert result.returncode == 1, url
        assert "bad URL" in result.stderr
    assert healthcheck("--timeout", "0", "http://127.0.0.1/").returncode == 2


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepted by the kernel, never answered
        started = time.monotonic()
        result = healthcheck("--timeout", "0.5", f"http://127.0.0.1:{listener.getsockname()[1]}/")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "no answer within 0.5s" in result.stderr
    assert elapsed < 20  # bounded by --timeout, not by the subprocess guard
