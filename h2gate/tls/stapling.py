"""Whether an OCSP response given with ``--ocsp-response`` can reach clients at all: one probe per process.

Why this exists: with pyOpenSSL 26.4, cryptography 50 and OpenSSL 4.0.3 the
server callback runs and hands its bytes to OpenSSL, yet no staple goes out
when the *leaf certificate is self-signed*; a certificate issued by a CA is
stapled in TLS 1.2 and 1.3 alike (OpenSSL 3.5 stapled both). An OCSP
response is the issuer's word on a certificate, so a self-signed one has
nothing meaningful to staple anyway; what must not happen is an option that
is accepted and silently does nothing. So before ``--ocsp-response`` is
used, :func:`probe` runs handshakes between two memory-BIO connections, a
server with the callback and a client that asks for the status, for a
CA-issued and a self-signed throwaway leaf, TLS 1.2 and 1.3; :func:`check`
then refuses the option at startup, naming the versions, where the probe
shows it cannot work for the configured certificate.
"""

from __future__ import annotations

import datetime
import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from h2gate.errors import ConfigError

#: Any bytes do for the probe: the client only checks that they arrive.
_PROBE_RESPONSE = b"\x30\x03\x0a\x01\x00"


def versions() -> str:
    import cryptography
    import OpenSSL

    openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")
    return f"pyOpenSSL {OpenSSL.__version__}, cryptography {cryptography.__version__}, {openssl}"


@functools.cache
def probe() -> tuple[bool, bool]:
    """(a CA-issued leaf is stapled, a self-signed leaf is stapled), each for TLS 1.2 and 1.3."""
    return _stapled(self_signed=False), _stapled(self_signed=True)


def check(leaf: x509.Certificate) -> None:
    """Raise ConfigError when a staple for ``leaf`` would never reach a client here."""
    issued, self_signed = probe()
    if not issued:
        raise ConfigError(
            f"--ocsp-response cannot work here: a test handshake got no OCSP staple from {versions()}; "
            "leave the option out (clients then ask the CA themselves) or use another pyOpenSSL/OpenSSL"
        )
    if not self_signed and _is_self_signed(leaf):
        raise ConfigError(
            f"--ocsp-response: the certificate is self-signed, and {versions()} staples nothing for a "
            "self-signed certificate (nor would a client trust an OCSP response for one): use a certificate "
            "issued by a CA, or leave the option out"
        )


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _stapled(*, self_signed: bool) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = key if self_signed else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h2gate stapling probe")])
    issuer = name if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h2gate probe CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(issuer_key, hashes.SHA256())
    )
    server = SSL.Context(SSL.TLS_SERVER_METHOD)
    server.use_certificate(cert)
    server.use_privatekey(key)
    server.set_ocsp_server_callback(lambda conn, data: _PROBE_RESPONSE)
    return all(_handshake(server, version) == _PROBE_RESPONSE for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION))


def _handshake(server_context: SSL.Context, version: int) -> bytes | None:
    got: list[bytes] = []
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_context.set_min_proto_version(version)
    client_context.set_max_proto_version(version)

    def on_status(conn: SSL.Connection, data: bytes, _: object = None) -> bool:
        got.append(data)
        return True

    client_context.set_ocsp_client_callback(on_status)
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    client.request_ocsp()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    try:
        for _ in range(8):  # a handful of flights finishes any handshake
            for a, b in ((client, server), (server, client)):
                try:
                    a.do_handshake()
                except SSL.WantReadError:
                    pass
                try:
                    b.bio_write(a.bio_read(1 << 16))
                except SSL.WantReadError:
                    pass
    except SSL.Error:
        return None
    return got[0] if got else None
