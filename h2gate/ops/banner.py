"""The startup block: one place that says what this server is and where it listens.

Printed once by the process that owns the sockets (the single process, or
the supervisor when its first workers are ready). Tests and tools look for
the ``listening on URL`` lines, so their shape is fixed.
"""

from __future__ import annotations

import datetime
import logging
import socket

from h2gate import __version__, build
from h2gate.config import Config
from h2gate.net.binds import display_address
from h2gate.protocol import codecs

log = logging.getLogger("h2gate.error")


def tls_summary(config: Config) -> str | None:
    """Certificate subject and expiry (or self-signed), lowest version, ALPN; None without TLS."""
    if not config.use_tls:
        return None
    alpn = "h2, http/1.1 (answered with a hint or a WebSocket)"
    policy = f"TLS >= {config.ssl_min_version}, ALPN {alpn}"
    if config.self_signed:
        return f"self-signed development certificate for localhost; {policy}"
    assert config.certfile is not None
    return f"{_describe_cert(config.certfile)}; {policy}"


def _describe_cert(path: str) -> str:
    from cryptography import x509

    try:
        with open(path, "rb") as fh:
            cert = x509.load_pem_x509_certificates(fh.read())[0]
    except (OSError, ValueError, IndexError) as exc:
        return f"certificate {path} (unreadable here: {exc})"
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    expires = cert.not_valid_after_utc
    days = (expires - datetime.datetime.now(datetime.UTC)).days
    note = "EXPIRED" if days < 0 else f"{days} days left"
    return f"certificate {subject}, expires {expires:%Y-%m-%d} ({note})"


def print_startup_block(config: Config, sockets: list[socket.socket], interface: str, how: str, workers: str) -> None:
    """Log the block: version, interface and app, process model, TLS, codec, then a ``listening on`` line per bind."""
    tls = config.use_tls
    log.info("h2gate %s (%s) serving %s app %s (%s)", __version__, build(), interface, config.app, how)
    log.info("processes: %s", workers)
    summary = tls_summary(config)
    log.info("TLS: %s", summary if summary else "off (cleartext HTTP/2: h2c)")
    log.info("HTTP/2 codec: %s", codecs.describe(config.codec))
    for sock in sockets:
        address = display_address(sock, tls)
        if tls:
            log.info("listening on %s (TLS, ALPN h2)", address)
        else:
            log.info(
                "listening on %s (cleartext HTTP/2, h2c prior knowledge or Upgrade; browsers only speak "
                "HTTP/2 over TLS: use --certfile/--keyfile or --self-signed for them)",
                address,
            )
