"""Turning a Config into a running server: load, check, bind, announce, serve."""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any

import trio

from h2gate import __version__
from h2gate.appload import as_asgi3, detect_interface, import_app
from h2gate.asgi.runner import AppRunner, make_runner
from h2gate.binds import display_address, open_socket, parse_bind
from h2gate.config import Config
from h2gate.server import Server

log = logging.getLogger("h2gate.error")


def build_ssl_context(config: Config) -> Any:
    """The certificate store (:class:`h2gate.certstore.CertStore`) for TLS binds, or None for cleartext.

    Raises ConfigError.
    """
    from h2gate import certstore, tls

    if not config.use_tls:
        return None
    keylog = os.environ.get("SSLKEYLOGFILE") or None
    if keylog:
        log.warning("SSLKEYLOGFILE is set: TLS session keys are written to %s (anyone with it can decrypt)", keylog)
    if config.self_signed:
        options = certstore.tls_options(config, keylog)
        context, fingerprint = tls.self_signed_context(options=options)
        log.warning(
            "USING A SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost (SHA-256 %s): "
            "clients will not trust it; never use --self-signed in production",
            fingerprint,
        )
        return certstore.CertStore(lambda hook: certstore.Contexts(context), reloadable=False)
    return certstore.load_cert_store(config, keylog)


def announce(config: Config, server: Server, interface: str) -> None:
    tls = server.ssl_context is not None
    if server.wsgi is not None:
        how = f"{config.threads} worker threads"
    else:
        how = f"app loop: {server.runner.name}"
    log.info("h2gate %s serving %s app %s (%s)", __version__, interface, config.app, how)
    for sock in server.sockets:
        address = display_address(sock, tls)
        if tls:
            log.info("listening on %s (TLS, ALPN h2)", address)
        else:
            log.info(
                "listening on %s (cleartext HTTP/2, h2c prior knowledge or Upgrade; browsers only speak "
                "HTTP/2 over TLS: use --certfile/--keyfile or --self-signed for them)",
                address,
            )


def run(config: Config) -> int:
    """Serve until shut down; returns the process exit code. Raises StartupError."""
    from h2gate.logs import setup_logging

    setup_logging(config.log_level, config.access_log)
    binds = [parse_bind(b) for b in config.bind]
    assert config.app is not None
    loaded = import_app(config.app, factory=config.factory, app_dir=config.app_dir)
    interface = detect_interface(loaded, config.app) if config.interface == "auto" else config.interface
    ssl_context = build_ssl_context(config)
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            sockets.append(open_socket(bind, config.backlog))
        wsgi = None
        if interface == "wsgi":
            from h2gate.wsgi import WSGIHandler

            wsgi = WSGIHandler(loaded, config)
            runner = AppRunner(as_asgi3(loaded))  # never called: WSGI has no lifespan
        else:
            runner = make_runner(as_asgi3(loaded), config.loop)
        name = interface.upper()
        try:
            server = Server(
                config, runner, sockets, ssl_context, on_ready=lambda s: announce(config, s, name), wsgi=wsgi
            )
            trio.run(server.serve)
        finally:
            # The server has stopped; a repeated SIGTERM from a supervisor must
            # not kill the last bounded clean-up steps.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            runner.close()
        if server.failure is not None:
            raise server.failure
        return server.exit_code
    finally:
        # The listeners have closed the sockets by now (getsockname() would
        # fail), so the paths come from the binds; an fd:// socket's path
        # belongs to whoever passed it in and is left alone.
        for bind, sock in zip(binds, sockets, strict=False):  # shorter if a bind failed
            sock.close()
            if bind.kind == "unix" and os.path.exists(bind.path):
                os.unlink(bind.path)
