"""build_server_context / self_signed_context: every startup error is one clear line."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from h2gate.errors import ConfigError, StartupError
from h2gate.tls.context import build_server_context, self_signed_context
from h2gate.tls.stream import TLSStream

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """A leaf certificate and its key, as separate and combined PEM files."""
    leaf = ca.issue_cert("localhost")
    paths = {
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "both": tmp_path / "both.pem",
    }
    leaf.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(paths["both"]))
    return paths


def config_error(fn: Callable[[], object]) -> str:
    """Call ``fn``, expect a ConfigError, return its (single-line) message."""
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, StartupError)
    return message


def handshake_ok(server_ctx: SSL.Context, client_ctx: ssl.SSLContext) -> str | None:
    """Handshake over memory streams; return the ALPN the server saw."""

    async def main() -> str | None:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        server = TLSStream(server_transport, server_ctx)
        client = trio.SSLStream(client_transport, client_ctx, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
        await client.send_all(b"ping")
        assert await server.receive_some() == b"ping"
        await client.aclose()
        await server.aclose()
        return server.info.alpn

    return trio.run(main)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def write_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: str, password: bytes | None) -> None:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private_format = (
        serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, private_format, encryption))


def leaf_key(files: dict[str, Path]) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(files["key"].read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# -- working configurations ---------------------------------------------------


def test_separate_cert_and_key(ca: trustme.CA, files: dict[str, Path]) -> None:
    ctx = build_server_context(str(files["cert"]), str(files["key"]), None)
    assert handshake_ok(ctx, trusting(ca)) == "h2"


def test_key_inside_certfile(ca: trustme.CA, files: dict[str, Path]) -> None:
    ctx = build_server_context(str(files["both"]), None, None)
    assert handshake_ok(ctx, trusting(ca)) == "h2"


def test_chain_with_intermediate(ca: trustme.CA, tmp_path: Path) -> None:
    """The client trusts only the root, so the intermediate must be sent."""
    leaf = ca.create_child_ca().issue_cert("localhost")
    pem = tmp_path / "chain.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    assert len(leaf.cert_chain_pems) == 2
    assert handshake_ok(build_server_context(str(pem), None, None), trusting(ca)) == "h2"


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_encrypted_key_with_right_password(ca: trustme.CA, files: dict[str, Path], fmt: str) -> None:
    write_key(files["key"], leaf_key(files), fmt, b"s3cret \xc3\xa9")
    ctx = build_server_context(str(files["cert"]), str(files["key"]), "s3cret é")
    assert handshake_ok(ctx, trusting(ca)) == "h2"


def test_password_for_unencrypted_key_is_ignored(ca: trustme.CA, files: dict[str, Path]) -> None:
    ctx = build_server_context(str(files["cert"]), str(files["key"]), "unused")
    assert handshake_ok(ctx, trusting(ca)) == "h2"


def test_alpn_preference_is_configurable(ca: trustme.CA, files: dict[str, Path]) -> None:
    ctx = build_server_context(str(files["both"]), None, None, alpn=(b"http/1.1",))
    client = trusting(ca)
    client.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake_ok(ctx, client) == "http/1.1"


# -- every ConfigError --------------------------------------------------------


def test_missing_certfile(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    message = config_error(lambda: build_server_context(str(missing), None, None))
    assert message == f"certificate file not found: {missing}"


def test_missing_keyfile(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    message = config_error(lambda: build_server_context(str(files["cert"]), str(missing), None))
    assert message == f"key file not found: {missing}"


def test_certfile_is_a_directory(tmp_path: Path) -> None:
    message = config_error(lambda: build_server_context(str(tmp_path), None, None))
    assert message == f"certificate file {tmp_path} is a directory, not a file"


def test_keyfile_is_a_directory(files: dict[str, Path], tmp_path: Path) -> None:
    message = config_error(lambda: build_server_context(str(files["cert"]), str(tmp_path), None))
    assert message == f"key file {tmp_path} is a directory, not a file"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_keyfile(files: dict[str, Path]) -> None:
    files["key"].chmod(0)
    message = config_error(lambda: build_server_context(str(files["cert"]), str(files["key"]), None))
    assert message == f"key file {files['key']} is not readable (permission denied)"


def test_permission_denied_message(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same branch as above, reached as root by faking the OS error."""

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    message = config_error(lambda: build_server_context(str(files["cert"]), None, None))
    assert message == f"certificate file {files['cert']} is not readable (permission denied)"


def test_garbage_certfile(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not a certificate\n")
    message = config_error(lambda: build_server_context(str(garbage), None, None))
    assert message == f"certificate file {garbage} does not contain a PEM certificate"


def test_key_given_as_certfile(files: dict[str, Path]) -> None:
    message = config_error(lambda: build_server_context(str(files["key"]), None, None))
    assert message == f"certificate file {files['key']} does not contain a PEM certificate"


def test_garbage_keyfile(files: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    message = config_error(lambda: build_server_context(str(files["cert"]), str(garbage), None))
    assert message == f"key file {garbage} does not contain a PEM private key"


def test_certfile_without_key(files: dict[str, Path]) -> None:
    message = config_error(lambda: build_server_context(str(files["cert"]), None, None))
    assert message == f"key file {files['cert']} does not contain a PEM private key"


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_encrypted_key_without_password(files: dict[str, Path], fmt: str) -> None:
    write_key(files["key"], leaf_key(files), fmt, b"s3cret")
    message = config_error(lambda: build_server_context(str(files["cert"]), str(files["key"]), None))
    assert message == f"key file {files['key']} is encrypted: pass --keyfile-password"


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_encrypted_key_wrong_password(files: dict[str, Path], fmt: str) -> None:
    write_key(files["key"], leaf_key(files), fmt, b"s3cret")
    message = config_error(lambda: build_server_context(str(files["cert"]), str(files["key"]), "guess"))
    assert message == f"wrong password for key file {files['key']}"


def test_key_does_not_match_certificate(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    write_key(other, ec.generate_private_key(ec.SECP256R1()), "pkcs8", None)
    message = config_error(lambda: build_server_context(str(files["cert"]), str(other), None))
    assert message == f"key file {other} does not match the certificate in {files['cert']}"


def test_unsupported_key_type(files: dict[str, Path], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    odd = tmp_path / "x25519.key"
    odd.write_bytes(
        x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    message = config_error(lambda: build_server_context(str(files["cert"]), str(odd), None))
    assert message.startswith(f"key file {odd} ")


# -- self-signed development certificate --------------------------------------


def test_self_signed_context() -> None:
    ctx, fingerprint = self_signed_context()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_alpn_protocols(["h2"])
    seen: list[bytes] = []

    async def main() -> None:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        server = TLSStream(server_transport, ctx)
        tls_client = trio.SSLStream(client_transport, client, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(tls_client.do_handshake)
        assert server.info.alpn == "h2"
        der = tls_client.getpeercert(binary_form=True)
        assert der is not None
        seen.append(der)
        await tls_client.aclose()
        await server.aclose()

    trio.run(main)
    der = seen[0]
    assert fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())

    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=7, hours=1)


def test_self_signed_verifies_for_localhost_names() -> None:
    """A client trusting the certificate itself accepts it for every local name."""
    ctx, _ = self_signed_context()
    # Fetch the certificate through a first, unverified handshake.
    holder: list[bytes] = []

    async def grab() -> None:
        a, b = trio.testing.memory_stream_pair()
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        server, client = TLSStream(b, ctx), trio.SSLStream(a, unverified, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
        der = client.getpeercert(binary_form=True)
        assert der is not None
        holder.append(der)
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)

    trio.run(grab)
    pem = ssl.DER_cert_to_PEM_cert(holder[0])
    for name in ("localhost", "127.0.0.1", "::1"):

        async def check(name: str = name) -> None:
            a, b = trio.testing.memory_stream_pair()
            verifying = ssl.create_default_context(cadata=pem)
            server, client = TLSStream(b, ctx), trio.SSLStream(a, verifying, server_hostname=name)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.do_handshake)
                nursery.start_soon(client.do_handshake)
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)

        trio.run(check)
