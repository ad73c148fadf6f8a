"""The startup block, --pid and the process-model flags, from the command line."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509

import h2gate
from h2gate.cli import main
from tests.cli.test_cli import APP, _one_error_line, run_h2gate
from tests.conftest import Certs


def test_startup_block_cleartext(serve: object) -> None:
    server = serve(APP)
    out = server.output
    assert f"h2gate 0.1.0 ({h2gate.build()}) serving ASGI app apps.basic:app (app loop: asyncio)" in out
    assert "processes: 1 (single process; SIGHUP reloads certificates)" in out
    assert "TLS: off (cleartext HTTP/2: h2c)" in out
    assert out.index("processes:") < out.index("listening on http://127.0.0.1:")


def test_startup_block_tls_names_the_certificate(serve: object, certs: Certs) -> None:
    server = serve(APP, tls=True)
    line = server.wait_for_log("TLS: certificate ")
    cert = x509.load_pem_x509_certificate(Path(certs.cert_pem).read_bytes())
    assert cert.subject.rfc4514_string() in line
    assert f"expires {cert.not_valid_after_utc:%Y-%m-%d}" in line and "days left" in line
    assert "TLS >= 1.2, ALPN h2, http/1.1" in line
    assert server.wait_for_log("listening on https://127.0.0.1:")


def test_startup_block_self_signed_with_workers(serve: object) -> None:
    server = serve(APP, "--self-signed", "-w", "2", "--ssl-min-version", "1.3")
    assert "TLS: self-signed development certificate for localhost; TLS >= 1.3" in server.output
    assert "processes: 2 worker(s) under supervisor pid" in server.output
    with httpx.Client(http2=True, verify=False, timeout=30) as client:
        response = client.get(server.url)
    assert response.http_version == "HTTP/2" and response.text == "hello"
    # One certificate for the whole server, whichever worker accepts: each prints its fingerprint.
    fingerprints = set(
        re.findall(r"SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost \(SHA-256 ([0-9A-F:]+)\)", server.output)
    )
    assert server.output.count("SELF-SIGNED DEVELOPMENT CERTIFICATE") >= 2 and len(fingerprints) == 1
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    seen = {_certificate_fingerprint(port) for _ in range(8)}
    assert seen == fingerprints
    assert server.stop() == 0


def _certificate_fingerprint(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest().hex(":").upper()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--reload", "-w", "2"], "--reload runs one worker: leave out --workers"),
        (["-w", "0"], "--workers: must be at least 1, got 0"),
        (["--max-requests", "-1"], "--max-requests: must be at least 0"),
    ],
)
def test_process_model_flag_errors(args: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("H2GATE_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(main, [APP, *args], prog_name="h2gate")
    assert result.exit_code == 2  # a usage error
    assert fragment in _one_error_line(result.stderr)


def test_pid_file_that_cannot_be_written(tmp_path: Path) -> None:
    result = run_h2gate(APP, "-b", "127.0.0.1:0", "--pid", str(tmp_path / "missing" / "h2gate.pid"))
    assert result.returncode == 1
    assert "cannot write --pid file" in _one_error_line(result.stderr)


def test_reload_dir_that_does_not_exist(tmp_path: Path) -> None:
    result = run_h2gate(APP, "-b", "127.0.0.1:0", "--reload", "--reload-dir", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert f"--reload-dir {tmp_path / 'nope'}: not a directory" in _one_error_line(result.stderr)
