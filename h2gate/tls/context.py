"""Building the pyOpenSSL server context: certificate, key and handshake policy.

Everything that can go wrong with the user's certificate or key is found here,
at startup, and reported as one :class:`~h2gate.errors.ConfigError` line that
names the file, instead of an OpenSSL error stack at the first connection.
The key is parsed with ``cryptography`` rather than OpenSSL's file loader so
that "encrypted but no password" and "wrong password" get distinct messages.

The settings follow RFC 9113 §9.2: TLS 1.2 or later, no compression, no
renegotiation, and for TLS 1.2 only ephemeral ECDHE key exchange with AEAD
ciphers. TLS 1.3 suites all qualify and are left at OpenSSL's defaults. The
key-exchange groups are ``--ssl-groups`` (X25519, P-256, P-384 by default, as
Mozilla's intermediate profile; OpenSSL's own list adds X448 and P-521), set
through :mod:`h2gate.internals.openssl_groups`. Session resumption: tickets
(``--ssl-session-tickets``, their key renewed by
:meth:`h2gate.tls.certstore.CertStore.rotate_ticket_key`) and OpenSSL's
in-process session cache. ``--ciphers`` may narrow the TLS 1.2 list but
not widen it past that rule (:func:`check_ciphers`), and client certificates
(mTLS) are verified by OpenSSL against ``--ca-certs``; a rejection's reason is
kept for the log line (:func:`client_cert_failure`). What a finished
handshake agreed lives in :mod:`h2gate.tls.info` (re-exported here).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from h2gate.errors import ConfigError
from h2gate.internals import openssl_groups
from h2gate.internals.openssl import verify_error_text
from h2gate.tls.info import TLSInfo, asgi_tls_extension, tls_info, wsgi_tls_environ

__all__ = [
    "DEFAULT_ALPN",
    "SELF_SIGNED_ENV",
    "TLSInfo",
    "TLSOptions",
    "asgi_tls_extension",
    "build_server_context",
    "check_ciphers",
    "make_self_signed",
    "self_signed_context",
    "tls_info",
    "wsgi_tls_environ",
]

log = logging.getLogger("h2gate.error")

DEFAULT_ALPN: tuple[bytes, ...] = (b"h2", b"http/1.1")
#: Mozilla's intermediate profile: X25519 first, then the NIST curves every client has.
DEFAULT_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")

# TLS 1.2 suites allowed by RFC 9113 §9.2.2 (ephemeral ECDHE, AEAD only); the
# mandatory ECDHE-RSA-AES128-GCM-SHA256 is among them. With server preference
# on, AES-GCM (hardware accelerated almost everywhere) is tried first.
_TLS12_CIPHERS = b":".join(
    (
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# The type of SSL.NO_OVERLAPPING_PROTOCOLS, which pyOpenSSL keeps private.
_NoOverlap: TypeAlias = "SSL._NoOverlappingProtocols"

# Key types OpenSSL can serve with (what pyOpenSSL accepts).
_SERVER_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)

# SSL_MODE_ENABLE_PARTIAL_WRITE from OpenSSL's ssl.h (pyOpenSSL has no name for it).
_MODE_ENABLE_PARTIAL_WRITE = 0x00000001

# SSL_OP_NO_RENEGOTIATION from OpenSSL's ssl.h, for pyOpenSSL builds that lack it.
_OP_NO_RENEGOTIATION: int = getattr(SSL, "OP_NO_RENEGOTIATION", 0x40000000)


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """The handshake policy beyond certificate and key (see the ``--ssl-*`` options)."""

    min_version: str = "1.2"
    ciphers: str | None = None  # TLS 1.2 cipher list; None = the RFC 9113 set below
    ca_certs: str | None = None
    verify_client: str = "none"  # none | optional | required
    keylog_file: str | None = None
    alpn: tuple[bytes, ...] = field(default=DEFAULT_ALPN)
    groups: tuple[str, ...] = DEFAULT_GROUPS
    session_tickets: bool = True


ServerNameHook = Callable[[SSL.Connection], None]


def build_server_context(
    certfile: str,
    keyfile: str | None,
    password: str | None,
    alpn: tuple[bytes, ...] = DEFAULT_ALPN,
    *,
    options: TLSOptions | None = None,
    on_server_name: ServerNameHook | None = None,
) -> SSL.Context:
    """Load the certificate chain and key into a new server context.

    ``keyfile`` None means the key is in ``certfile``. ``alpn`` is the server's
    preference order for ALPN (``options.alpn`` wins when ``options`` is
    given). ``on_server_name`` is the SNI hook (see :func:`_on_server_name`).
    Raises :class:`ConfigError` (one line, naming the file) if a file is
    missing or unreadable, is not PEM, the key is encrypted without a password
    or with a wrong one, the key does not belong to the certificate, or an
    option in ``options`` is unusable.
    """
    cert_data = _read(certfile, "certificate file")
    try:
        certs = x509.load_pem_x509_certificates(cert_data)
    except ValueError as exc:
        raise ConfigError(f"certificate file {certfile} does not contain a PEM certificate") from exc
    if keyfile is None:
        keyfile, key_data = certfile, cert_data
    else:
        key_data = _read(keyfile, "key file")
    key = _load_key(key_data, keyfile, password)
    if not _same_public_key(certs[0], key):
        raise ConfigError(f"key file {keyfile} does not match the certificate in {certfile}")

    context = _new_context(alpn, options, on_server_name)
    try:
        # OpenSSL sends the whole chain from this file, leaf first.
        context.use_certificate_chain_file(certfile)
    except SSL.Error as exc:
        raise ConfigError(f"certificate file {certfile} cannot be used: {_ssl_reason(exc)}") from exc
    _use_key(context, key, keyfile)
    return context


#: Environment variable through which a supervisor hands its workers one self-signed pair (PEM),
#: so every worker shows clients the same certificate. Not an option: no H2GATE_ prefix.
SELF_SIGNED_ENV = "_H2GATE_SELF_SIGNED_PEM"


def make_self_signed() -> str:
    """A throwaway certificate for localhost and its key, as one PEM text (certificate first)."""
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
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (cert.public_bytes(serialization.Encoding.PEM) + key_pem).decode("ascii")


def self_signed_context(
    alpn: tuple[bytes, ...] = DEFAULT_ALPN, *, options: TLSOptions | None = None, pem: str | None = None
) -> tuple[SSL.Context, str]:
    """A context with a throwaway certificate for localhost, for trying the server out.

    ``pem`` (from :func:`make_self_signed`) is the pair to use; without it a
    new one is made. The key never touches the disk. Returns the context and
    the certificate's SHA-256 fingerprint (``AB:CD:...``) for the startup
    warning, so a user who accepts it in a browser can check it is the one
    this process printed.
    """
    data = (pem or make_self_signed()).encode("ascii")
    cert = x509.load_pem_x509_certificate(data)
    key = serialization.load_pem_private_key(data, None)
    context = _new_context(alpn, options, None)
    context.use_certificate(cert)
    context.use_privatekey(key)  # type: ignore[arg-type]  # ours: an EC key
    context.check_privatekey()
    return context, cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _new_context(
    alpn: Sequence[bytes], options: TLSOptions | None, on_server_name: ServerNameHook | None
) -> SSL.Context:
    """A server context with every setting except the certificate and key."""
    if options is not None:
        alpn = options.alpn
    options = options or TLSOptions()
    preference = tuple(alpn)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION if options.min_version == "1.3" else SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | _OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_cipher_list(check_ciphers(options.ciphers) if options.ciphers else _TLS12_CIPHERS)
    _set_groups(context, options.groups)
    # Resumption stays within this process: its session cache, or tickets under its own key.
    context.set_session_id(b"h2gate")
    if not options.session_tickets:
        context.set_options(SSL.OP_NO_TICKET)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # pyOpenSSL turns on partial writes (one record per SSL_write); over a
    # memory BIO, which never fills, one call can encrypt a whole chunk.
    context.clear_mode(_MODE_ENABLE_PARTIAL_WRITE)
    # An idle connection gives back OpenSSL's record buffers (about 34 KiB for reading and
    # writing) until its next record: most HTTP/2 connections are idle most of the time.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)

    def select_alpn(conn: SSL.Connection, offered: list[bytes]) -> bytes | _NoOverlap:
        # Our preference, not the client's: h2 whenever the client offers it.
        # No overlap is not fatal: the handshake finishes without ALPN and the
        # server decides afterwards (prior-knowledge h2, or a polite refusal).
        for proto in preference:
            if proto in offered:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS

    context.set_alpn_select_callback(select_alpn)
    context.set_tlsext_servername_callback(on_server_name or _on_server_name)
    if options.verify_client != "none":
        _require_client_certs(context, options)
    if options.keylog_file:
        context.set_keylog_callback(functools.partial(_write_keylog, options.keylog_file))
    return context


_groups_warned = False


def _set_groups(context: SSL.Context, groups: tuple[str, ...]) -> None:
    """--ssl-groups; raises ConfigError naming a group OpenSSL does not know."""
    global _groups_warned
    try:
        done = openssl_groups.set_groups(context, list(groups))
    except ValueError:
        for group in groups:  # which one: try each alone
            try:
                openssl_groups.set_groups(SSL.Context(SSL.TLS_SERVER_METHOD), [group])
            except ValueError:
                raise ConfigError(f"--ssl-groups: OpenSSL does not know the group {group!r}") from None
        raise ConfigError(f"--ssl-groups {','.join(groups)!r} is not accepted by OpenSSL") from None
    if not done and not _groups_warned:
        _groups_warned = True
        log.warning("--ssl-groups cannot be applied (%s): OpenSSL's default groups are used", openssl_groups.probe())


def _require_client_certs(context: SSL.Context, options: TLSOptions) -> None:
    """mTLS: ask for a client certificate and verify it against ``ca_certs``."""
    ca = options.ca_certs
    if not ca:
        raise ConfigError(f"--verify-client {options.verify_client} needs --ca-certs")
    try:
        x509.load_pem_x509_certificates(_read(ca, "CA certificates file"))
    except ValueError as exc:
        raise ConfigError(f"CA certificates file {ca} does not contain a PEM certificate") from exc
    try:
        context.load_verify_locations(ca)
        context.load_client_ca(ca.encode())  # the CA names sent in CertificateRequest
    except SSL.Error as exc:
        raise ConfigError(f"CA certificates file {ca} cannot be used: {_ssl_reason(exc)}") from exc
    mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    if options.verify_client == "required":
        mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    context.set_verify(mode, _verify_client)


#: Why a client certificate was rejected, per connection (read when the handshake fails).
_verify_failures: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()


def _verify_client(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict stands; a failure's reason is kept for the log line."""
    if not ok and conn not in _verify_failures:
        try:
            subject = cert.to_cryptography().subject.rfc4514_string()
        except Exception:  # only decorates a log line
            subject = "?"
        _verify_failures[conn] = f"{_verify_reason(errno)} (depth {depth}, subject {subject or '(empty)'})"
    return bool(ok)


def _verify_reason(errno: int) -> str:
    try:
        return verify_error_text(errno)
    except Exception:
        return f"verify error {errno}"


def client_cert_failure(conn: SSL.Connection, exc: BaseException | None = None) -> str | None:
    """Why the client's certificate ended this handshake, or None if that was not the cause."""
    reason = _verify_failures.get(conn)
    if reason is not None:
        return reason
    if exc is not None and "peer did not return a certificate" in str(exc):
        return "no client certificate sent (--verify-client required)"
    return None


def _write_keylog(path: str, conn: SSL.Connection, line: bytes) -> None:
    """SSLKEYLOGFILE: append one NSS key log line (lets Wireshark decrypt; debugging only)."""
    try:
        with open(path, "ab") as fh:
            fh.write(line + b"\n")
    except OSError as exc:
        log.warning("cannot write TLS key log %s: %s", path, exc.strerror or exc)


def check_ciphers(ciphers: str) -> bytes:
    """Validate a TLS 1.2 cipher list for HTTP/2; returns it as bytes.

    Raises ConfigError (one line) if OpenSSL matches nothing, or if it allows
    a suite RFC 9113 §9.2.2 forbids: TLS 1.2 must use ephemeral ECDHE key
    exchange and an AEAD cipher (TLS 1.3 suites are not affected).
    """
    probe = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        probe.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as exc:
        raise ConfigError(f"--ciphers {ciphers!r} matches no cipher OpenSSL knows") from exc
    names = [n for n in SSL.Connection(probe, None).get_cipher_list() if not n.startswith("TLS_")]
    if not names:
        raise ConfigError(f"--ciphers {ciphers!r} leaves no TLS 1.2 cipher")
    for name in names:
        aead = any(tag in name for tag in ("-GCM-", "-CHACHA20-POLY1305", "-CCM"))
        if not name.startswith("ECDHE-") or "PSK" in name or not aead:
            raise ConfigError(
                f"--ciphers {ciphers!r} allows {name}, which HTTP/2 forbids (RFC 9113 §9.2.2: "
                "TLS 1.2 needs ECDHE key exchange and an AEAD cipher)"
            )
    return ciphers.encode("ascii")


def _on_server_name(conn: SSL.Connection) -> None:
    """Default SNI hook (one certificate): nothing to switch.

    The name is read after the handshake with ``conn.get_servername()``.
    :class:`h2gate.tls.certstore.CertStore` passes its own hook, which looks the
    name up and ``conn.set_context(...)`` to that name's context.
    Must not raise: pyOpenSSL turns an exception into a fatal alert.
    """


def _read(path: str, what: str) -> bytes:
    """Read a whole file, turning OS errors into one line that names it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{what} {path} is a directory, not a file") from exc
    except PermissionError as exc:
        raise ConfigError(f"{what} {path} is not readable (permission denied)") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc


def _load_key(data: bytes, keyfile: str, password: str | None) -> PrivateKeyTypes:
    """Parse a PEM private key, telling 'needs a password' from 'wrong password'."""
    try:
        # Probe without a password first: the error says whether it is encrypted.
        return serialization.load_pem_private_key(data, None)
    except TypeError:
        pass  # encrypted
    except ValueError as exc:
        raise ConfigError(f"key file {keyfile} does not contain a PEM private key") from exc
    except UnsupportedAlgorithm as exc:
        raise ConfigError(f"key file {keyfile} holds a key of an unsupported type") from exc
    if password is None:
        raise ConfigError(f"key file {keyfile} is encrypted: pass --keyfile-password")
    try:
        return serialization.load_pem_private_key(data, password.encode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"wrong password for key file {keyfile}") from exc
    except UnsupportedAlgorithm as exc:
        raise ConfigError(f"key file {keyfile} holds a key of an unsupported type") from exc


def _same_public_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """Whether ``key`` is the private half of the certificate's public key."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _use_key(context: SSL.Context, key: PrivateKeyTypes, keyfile: str) -> None:
    """Install the key; OpenSSL re-checks that it matches the leaf certificate."""
    # pyOpenSSL takes cryptography keys directly (its PKey wrapper is deprecated).
    if not isinstance(key, _SERVER_KEY_TYPES):
        raise ConfigError(f"key file {keyfile} holds a key of an unsupported type")
    try:
        context.use_privatekey(key)
        context.check_privatekey()
    except SSL.Error as exc:
        raise ConfigError(f"key file {keyfile} cannot be used: {_ssl_reason(exc)}") from exc


def _ssl_reason(exc: SSL.Error) -> str:
    """The last OpenSSL reason string of an error, for a one-line message."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, list) and details and isinstance(details[-1], tuple):
        return str(details[-1][-1])
    return str(exc) or type(exc).__name__
