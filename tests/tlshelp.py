"""Certificates for the TLS feature tests (trustme), and helpers to see what a server presents."""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509


@dataclass
class Pair:
    cert: str
    key: str

    @property
    def spec(self) -> str:
        return f"{self.cert}:{self.key}"


def write_leaf(leaf: trustme.LeafCert, directory: Path, name: str) -> Pair:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return Pair(str(cert), str(key))


@dataclass
class PKI:
    ca: trustme.CA
    ca_pem: str
    server: Pair  # localhost, 127.0.0.1
    other: Pair  # other.example.test
    wild: Pair  # *.wild.example.test
    client: Pair  # a client certificate from the same CA
    stranger: Pair  # a client certificate from an unrelated CA


def make_pki(directory: Path) -> PKI:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return PKI(
        ca=ca,
        ca_pem=str(directory / "ca.pem"),
        server=write_leaf(ca.issue_cert("localhost", "127.0.0.1"), directory, "server"),
        other=write_leaf(ca.issue_cert("other.example.test"), directory, "other"),
        wild=write_leaf(ca.issue_cert("*.wild.example.test"), directory, "wild"),
        client=write_leaf(ca.issue_cert("client@example.test", common_name="alice"), directory, "client"),
        stranger=write_leaf(trustme.CA().issue_cert("mallory@example.test", common_name="mallory"), directory, "bad"),
    )


def served_cert(port: int, server_name: str | None, alpn: str = "h2") -> x509.Certificate:
    """The leaf certificate the server presents for ``server_name`` (None: no SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as sock:
            der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def dns_names(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, f"curl failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc
