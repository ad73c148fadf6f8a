"""TLS groups, session resumption (tickets on/off, key rotation) and OCSP stapling, checked with independent clients.

``openssl s_client`` offers groups and asks for the status; Python's ssl
module resumes sessions (it reports ``session_reused``).
"""

from __future__ import annotations

import datetime
import functools
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from h2gate.tls import stapling
from tests.conftest import Certs, ServerProcess
from tests.h2raw import PREFACE
from tests.tls.test_tls_reload import ocsp_response
from tests.tlshelp import make_pki

APP = "apps.basic:app"
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def s_client(port: int, *flags: str) -> str:
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *flags],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc.stdout + proc.stderr


# -- groups ------------------------------------------------------------------------------------------------


def test_default_groups_are_x25519_p256_p384(serve, certs: Certs) -> None:
    server = serve(APP, tls=True)
    for group, curve in (("X25519", "X25519"), ("P-256", "prime256v1"), ("P-384", "secp384r1")):
        out = s_client(server.port, "-groups", group, "-tls1_3")
        assert f"Server Temp Key: {'ECDH, ' if group != 'X25519' else ''}{curve}" in out, (group, out)
    for group in ("X448", "P-521"):  # in OpenSSL's own default list, not in ours
        out = s_client(server.port, "-groups", group)
        assert "handshake failure" in out and "Server Temp Key" not in out, group


def test_ssl_groups_option(serve, certs: Certs) -> None:
    server = serve(APP, "--ssl-groups", "P-384", tls=True)
    assert "secp384r1" in s_client(server.port, "-groups", "X25519:P-384")
    assert "handshake failure" in s_client(server.port, "-groups", "X25519")
    bad = serve(APP, "--ssl-groups", "X25519,nonsense", tls=True, wait=False)
    assert bad.proc.wait(30) != 0
    assert "--ssl-groups: OpenSSL does not know the group 'nonsense'" in bad.output


# -- resumption ----------------------------------------------------------------------------------------------


@functools.cache
def client_context(ca: str, version: str) -> ssl.SSLContext:
    """One context per CA and version: a session resumes only with the context that made it."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = context.maximum_version = VERSIONS[version]
    context.set_alpn_protocols(["h2"])
    return context


def connect(port: int, ca: str, version: str, session: ssl.SSLSession | None = None) -> tuple[ssl.SSLSession, bool]:
    """One TLS connection that speaks enough HTTP/2 to get the server's SETTINGS (after any session ticket)."""
    context = client_context(ca, version)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            tls.recv(65536)  # the server's SETTINGS: a TLS 1.3 ticket came before it
            assert tls.session is not None
            return tls.session, tls.session_reused


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_sessions_resume_with_tickets(serve, certs: Certs, version: str) -> None:
    server = serve(APP, tls=True)
    session, reused = connect(server.port, certs.ca_pem, version)
    assert not reused
    assert connect(server.port, certs.ca_pem, version, session)[1]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_no_resumption_with_session_tickets_off(serve, certs: Certs, version: str) -> None:
    server = serve(APP, "--ssl-session-tickets", "off", tls=True)
    session, _ = connect(server.port, certs.ca_pem, version)
    assert not connect(server.port, certs.ca_pem, version, session)[1]


def test_the_ticket_key_is_renewed(serve, certs: Certs) -> None:
    lifetime = 3.0
    server = serve(APP, "--ssl-ticket-key-lifetime", str(lifetime), "--ssl-session-tickets", "on", tls=True)
    old, _ = connect(server.port, certs.ca_pem, "1.3")
    time.sleep(2 * lifetime + 0.5)  # at least one new key since: the old ticket no longer decrypts
    fresh, reused = connect(server.port, certs.ca_pem, "1.3", old)
    assert not reused
    # A ticket of the current key resumes (tried a few times: a renewal may fall in between).
    results = []
    for _ in range(3):
        results.append(connect(server.port, certs.ca_pem, "1.3", fresh)[1])
        fresh = connect(server.port, certs.ca_pem, "1.3")[0]
    assert any(results)


# -- OCSP stapling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_ocsp_staple_in_tls12_and_tls13(serve, pki, tmp_path: Path, version: str) -> None:
    der = tmp_path / "ocsp.der"
    der.write_bytes(ocsp_response(pki, pki.server.cert, next_update=datetime.timedelta(days=1)))
    server = serve(APP, "--certfile", pki.server.cert, "--keyfile", pki.server.key, "--ocsp-response", str(der))
    out = s_client(server.port, "-status", version)
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    assert ("TLSv1.3" if version == "-tls1_3" else "TLSv1.2") in out


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "self.pem", directory / "self.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_ocsp_response_for_a_self_signed_certificate(serve, tmp_path: Path) -> None:
    """Where OpenSSL staples nothing for a self-signed certificate (OpenSSL 4), the option is refused at startup."""
    cert, key = self_signed(tmp_path)
    der = tmp_path / "ocsp.der"
    der.write_bytes(b"\x30\x03\x0a\x01\x01")  # never read: the check comes first, or the file is refused as not DER
    server: ServerProcess = serve(
        APP, "--certfile", str(cert), "--keyfile", str(key), "--ocsp-response", str(der), wait=False
    )
    assert server.proc.wait(30) != 0
    if stapling.probe()[1]:
        assert "is not a DER-encoded OCSP response" in server.output  # this OpenSSL staples for them: no refusal
    else:
        assert "--ocsp-response: the certificate is self-signed" in server.output, server.output
        assert "staples nothing for a self-signed certificate" in server.output


def test_stapling_probe_finds_what_this_openssl_does() -> None:
    issued, _ = stapling.probe()
    assert issued  # a CA-issued certificate is stapled: test_ocsp_staple_in_tls12_and_tls13 shows it end to end
