"""The server's certificates: per-name contexts for SNI, OCSP staples, reload on SIGHUP.

Theory of operation
-------------------
Every certificate gets its own ``SSL.Context`` with the same policy
(:class:`~h2gate.tls.context.TLSOptions`). A handshake always starts on the default
context; when the client names a host (SNI), :meth:`CertStore._on_server_name`
looks the name up (exact names first, then ``*.parent`` wildcards covering one
label) and moves the connection to that context with ``set_context``. Unknown
or absent names keep the default certificate.

The contexts are built together into one immutable :class:`Contexts` and
:meth:`CertStore.reload` swaps it whole: new handshakes use the new set,
established connections keep the ``SSL.Connection`` (and context) they were
made with. If anything in the new set fails to load, nothing is swapped and
the reason is logged.

An OCSP response file is checked against the default certificate when loaded
(right certificate, right issuer, status good, not expired) and again for
staleness at every handshake that asks for it; a response that fails is not
stapled, and the log says why. Its signature is the client's to verify.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509 import ocsp
from OpenSSL import SSL

from h2gate.config import Config
from h2gate.errors import ConfigError
from h2gate.tls import context as tls
from h2gate.tls import stapling

log = logging.getLogger("h2gate.error")

__all__ = ["CertStore", "Contexts", "SiteCert", "load_cert_store", "parse_cert_spec"]


@dataclass(frozen=True, slots=True)
class SiteCert:
    """One ``--cert HOSTNAME=CERTFILE:KEYFILE``."""

    host: str
    certfile: str
    keyfile: str | None


def parse_cert_spec(spec: str) -> SiteCert:
    """Parse ``HOSTNAME=CERTFILE[:KEYFILE]``. Raises ConfigError."""
    host, sep, files = spec.partition("=")
    host = host.strip().lower().rstrip(".")
    if not sep or not host or not files:
        raise ConfigError(f"--cert {spec!r}: expected HOSTNAME=CERTFILE:KEYFILE")
    if "*" in host and (not host.startswith("*.") or "*" in host[2:] or host.count(".") < 2):
        raise ConfigError(f"--cert {spec!r}: a wildcard must be the whole first label, as in *.example.com")
    certfile, colon, keyfile = files.rpartition(":")
    if not colon:
        certfile, keyfile = files, ""
    return SiteCert(host, certfile, keyfile or None)


@dataclass(frozen=True, slots=True)
class OCSPStaple:
    """A checked OCSP response for the default certificate."""

    path: str
    der: bytes
    next_update: datetime.datetime | None
    _warned: list[bool] = field(default_factory=lambda: [False])

    def current(self) -> bytes:
        """The response if still fresh, else b"" (no staple), logging the first time it went stale."""
        if self.next_update is not None and self.next_update <= datetime.datetime.now(datetime.UTC):
            if not self._warned[0]:
                self._warned[0] = True
                log.warning("OCSP response %s expired at %s: no longer stapled", self.path, self.next_update)
            return b""
        return self.der


@dataclass(frozen=True, slots=True)
class Contexts:
    default: SSL.Context
    exact: dict[str, SSL.Context] = field(default_factory=dict)
    wildcard: dict[str, SSL.Context] = field(default_factory=dict)  # "example.com" for "*.example.com"

    def lookup(self, name: str) -> SSL.Context | None:
        name = name.lower().rstrip(".")
        found = self.exact.get(name)
        if found is None:
            label, dot, parent = name.partition(".")
            if label and dot:
                found = self.wildcard.get(parent)
        return found


Loader = Callable[[tls.ServerNameHook], Contexts]


class CertStore:
    """The contexts new handshakes start from; :meth:`reload` swaps them."""

    def __init__(self, load: Loader, *, reloadable: bool = True) -> None:
        """Build the contexts now. Raises ConfigError."""
        self._load = load
        self._reloadable = reloadable
        self.current = load(self._on_server_name)

    @property
    def context(self) -> SSL.Context:
        return self.current.default

    def rotate_ticket_key(self) -> bool:
        """New contexts for the same files: new session tickets are encrypted under a fresh key.

        OpenSSL gives every context a random ticket key, and pyOpenSSL has no
        call to change it, so a new key means new contexts. Tickets under the
        old key still reach us for a while; they get a full handshake.
        """
        if not self._reloadable:
            try:
                self.current = self._load(self._on_server_name)
            except ConfigError:
                return False
            return True
        try:
            self.current = self._load(self._on_server_name)
        except ConfigError as exc:
            log.warning("session ticket key not renewed (the certificate files cannot be read again): %s", exc)
            return False
        log.debug("session ticket key renewed")
        return True

    def reload(self) -> bool:
        """Re-read every certificate, key and OCSP file; keep the old set if any fails."""
        if not self._reloadable:
            log.info("SIGHUP: nothing to reload (self-signed certificate)")
            return False
        try:
            self.current = self._load(self._on_server_name)
        except ConfigError as exc:
            log.error("certificate reload failed, still serving the previous certificates: %s", exc)
            return False
        log.info("certificates reloaded: new TLS handshakes use them")
        return True

    def _on_server_name(self, conn: SSL.Connection) -> None:
        # Called mid-handshake; must not raise (pyOpenSSL would turn it into a fatal alert).
        name = conn.get_servername()
        if not name:
            return
        context = self.current.lookup(name.decode("ascii", "replace"))
        if context is not None:
            conn.set_context(context)


def tls_options(config: Config, keylog_file: str | None) -> tls.TLSOptions:
    return tls.TLSOptions(
        min_version=config.ssl_min_version,
        ciphers=config.ciphers,
        ca_certs=config.ca_certs,
        verify_client=config.verify_client,
        keylog_file=keylog_file,
        groups=tuple(g.strip() for item in config.ssl_groups for g in item.replace(":", ",").split(",") if g.strip()),
        session_tickets=config.ssl_session_tickets == "on",
    )


def load_cert_store(config: Config, keylog_file: str | None = None) -> CertStore:
    """The store for ``--certfile`` and every ``--cert``. Raises ConfigError."""
    assert config.certfile is not None
    if config.ocsp_response:
        leaf = x509.load_pem_x509_certificates(tls._read(config.certfile, "certificate file"))[0]
        stapling.check(leaf)  # refuses the option where no staple would ever go out
    options = tls_options(config, keylog_file)
    sites = [parse_cert_spec(spec) for spec in config.cert]
    certfile = config.certfile

    def load(hook: tls.ServerNameHook) -> Contexts:
        default = tls.build_server_context(
            certfile, config.keyfile, config.keyfile_password, options=options, on_server_name=hook
        )
        if config.ocsp_response:
            staple = load_ocsp(config.ocsp_response, certfile)
            if staple is not None:
                default.set_ocsp_server_callback(lambda conn, data: staple.current())
        contexts = Contexts(default)
        for site in sites:
            context = tls.build_server_context(
                site.certfile, site.keyfile, config.keyfile_password, options=options, on_server_name=hook
            )
            if site.host.startswith("*."):
                contexts.wildcard[site.host[2:]] = context
            else:
                contexts.exact[site.host] = context
        return contexts

    return CertStore(load)


def load_ocsp(path: str, certfile: str) -> OCSPStaple | None:
    """Read and check an OCSP response for the leaf of ``certfile``.

    Returns None (with a warning logged) for a response that must not be
    stapled: unsuccessful, for another certificate or issuer, not "good",
    expired or not yet valid. Raises ConfigError if the file cannot be read or
    is not a DER OCSP response.
    """
    der = tls._read(path, "OCSP response file")
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise ConfigError(f"OCSP response file {path} is not a DER-encoded OCSP response") from exc
    chain = x509.load_pem_x509_certificates(tls._read(certfile, "certificate file"))
    problem = _ocsp_problem(response, chain)
    if problem is not None:
        log.warning("OCSP response %s not stapled: %s", path, problem)
        return None
    return OCSPStaple(path, der, response.next_update_utc)


def _ocsp_problem(response: ocsp.OCSPResponse, chain: list[x509.Certificate]) -> str | None:
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"status {response.response_status.name}"
    leaf = chain[0]
    if response.serial_number != leaf.serial_number:
        return "it is for another certificate (serial number differs)"
    if len(chain) > 1:
        expected = ocsp.OCSPRequestBuilder().add_certificate(leaf, chain[1], response.hash_algorithm).build()
        if expected.issuer_key_hash != response.issuer_key_hash or (
            expected.issuer_name_hash != response.issuer_name_hash
        ):
            return "it is for a certificate of another issuer"
    if response.certificate_status != ocsp.OCSPCertStatus.GOOD:
        return f"certificate status is {response.certificate_status.name}"
    now = datetime.datetime.now(datetime.UTC)
    if response.this_update_utc > now + datetime.timedelta(minutes=5):
        return f"not valid before {response.this_update_utc}"
    if response.next_update_utc is not None and response.next_update_utc <= now:
        return f"stale: expired at {response.next_update_utc}"
    return None
