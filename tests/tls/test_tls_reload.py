"""TLS policy and certificate lifetime: reload on SIGHUP, OCSP stapling, min version, ciphers, key log."""

from __future__ import annotations

import datetime
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from h2gate.errors import ConfigError
from h2gate.tls.context import check_ciphers
from tests.conftest import ServerProcess
from tests.tlshelp import PKI, make_pki, served_cert, write_leaf

APP = "apps.basic:app"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_flags(cert: str, key: str, *extra: str) -> list[str]:
    return ["--certfile", cert, "--keyfile", key, *extra]


# -- reload ---------------------------------------------------------------------------------------


def test_sighup_reloads_certificates(serve, pki, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    server = serve(APP, *tls_flags(str(cert), str(key)))
    first = served_cert(server.port, "localhost")
    # An established connection, to check it survives the reload.
    client = httpx.Client(http2=True, verify=pki.ca_pem, timeout=20)
    url = f"https://127.0.0.1:{server.port}/"
    assert client.get(url).text == "hello"

    fresh = write_leaf(pki.ca.issue_cert("localhost", "127.0.0.1"), tmp_path, "fresh")
    shutil.copy(fresh.cert, cert)
    shutil.copy(fresh.key, key)
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("certificates reloaded")
    second = served_cert(server.port, "localhost")
    assert second.serial_number != first.serial_number
    assert second.serial_number == x509.load_pem_x509_certificate(Path(fresh.cert).read_bytes()).serial_number
    response = client.get(url)  # same connection as before
    assert response.text == "hello" and response.http_version == "HTTP/2"
    client.close()

    # A broken file: the old certificate stays, the log says why.
    cert.write_text("not a certificate\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"certificate reload failed, still serving the previous certificates: .*live\.pem")
    assert served_cert(server.port, "localhost").serial_number == second.serial_number
    with httpx.Client(http2=True, verify=pki.ca_pem, timeout=20) as again:
        assert again.get(url).text == "hello"


# -- OCSP stapling -------------------------------------------------------------------------------


def ocsp_response(pki: PKI, leaf_pem: str, *, next_update: datetime.timedelta) -> bytes:
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.private_key_pem.bytes(), None)
    leaf = x509.load_pem_x509_certificates(Path(leaf_pem).read_bytes())[0]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=ca_cert,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now - datetime.timedelta(days=2),
            next_update=now + next_update,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
    )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def s_client_status(port: int) -> str:
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-status"],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc.stdout


def test_ocsp_stapled_and_refreshed(serve, pki, tmp_path: Path) -> None:
    der = tmp_path / "ocsp.der"
    der.write_bytes(ocsp_response(pki, pki.server.cert, next_update=datetime.timedelta(days=1)))
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key, "--ocsp-response", str(der)))
    out = s_client_status(server.port)
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out
    # A stale response replaces it on SIGHUP: no longer stapled, and logged.
    der.write_bytes(ocsp_response(pki, pki.server.cert, next_update=-datetime.timedelta(hours=1)))
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"OCSP response .* not stapled: stale")
    server.wait_for_log("certificates reloaded")
    assert "OCSP response: no response sent" in s_client_status(server.port)


def test_ocsp_for_another_certificate_is_not_stapled(serve, pki, tmp_path: Path) -> None:
    der = tmp_path / "ocsp.der"
    der.write_bytes(ocsp_response(pki, pki.other.cert, next_update=datetime.timedelta(days=1)))
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key, "--ocsp-response", str(der)))
    server.wait_for_log("not stapled: it is for another certificate")
    assert "OCSP response: no response sent" in s_client_status(server.port)


# -- version, ciphers, key log --------------------------------------------------------------------


def handshake(port: int, pki: PKI, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> str:
    ctx = ssl.create_default_context(cafile=pki.ca_pem)
    ctx.set_alpn_protocols(["h2"])
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            return f"{sock.version()} {sock.cipher()[0]}"


def test_min_version_13(serve, pki) -> None:
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key, "--ssl-min-version", "1.3"))
    assert handshake(server.port, pki).startswith("TLSv1.3")
    with pytest.raises(ssl.SSLError):
        handshake(server.port, pki, maximum=ssl.TLSVersion.TLSv1_2)


def test_ciphers_option(serve, pki) -> None:
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key, "--ciphers", "ECDHE+CHACHA20"))
    assert handshake(server.port, pki, maximum=ssl.TLSVersion.TLSv1_2) == "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305"


@pytest.mark.parametrize("bad", ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "DEFAULT", "HIGH"])
def test_forbidden_ciphers_refused_at_startup(serve, pki, bad) -> None:
    with pytest.raises(ConfigError, match="RFC 9113"):
        check_ciphers(bad)
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key, "--ciphers", bad), wait=False)
    assert server.proc.wait(20) == 1
    server.stop()
    lines = [line for line in server.lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("h2gate: error: --ciphers") and "RFC 9113" in lines[0]


def test_unknown_ciphers_refused() -> None:
    with pytest.raises(ConfigError, match="matches no cipher"):
        check_ciphers("NOPE-NOT-A-CIPHER")
    assert check_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")


def test_sslkeylogfile(serve, pki, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    server = serve(APP, *tls_flags(pki.server.cert, pki.server.key), env={"SSLKEYLOGFILE": str(keylog)})
    server.wait_for_log("SSLKEYLOGFILE is set")
    handshake(server.port, pki)
    text = keylog.read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in text or "CLIENT_RANDOM" in text


def test_sighup_without_tls_is_harmless(serve) -> None:
    server: ServerProcess = serve(APP)
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("nothing to reload")
    assert server.proc.poll() is None
