"""Turning a Config into a running server: load, check, bind, announce, serve."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import trio

from h2gate import __version__
from h2gate.appload import as_asgi3, import_app
from h2gate.asgi.runner import make_runner
from h2gate.binds import display_address, open_socket, parse_bind
from h2gate.config import Config
from h2gate.server import Server

log = logging.getLogger("h2gate.error")


def build_ssl_context(config: Config) -> Any:
    """The pyOpenSSL context for TLS binds, or None for cleartext h2c. Raises ConfigError."""
    from h2gate import tls

    if config.self_signed:
        context, fingerprint = tls.self_signed_context()
        log.warning(
            "USING A SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost (SHA-256 %s): "
            "clients will not trust it; never use --self-signed in production",
            fingerprint,
        )
        return context
    if config.certfile:
        return tls.build_server_context(config.certfile, config.keyfile, config.keyfile_password)
    return None


def announce(config: Config, server: Server, interface: str) -> None:
    tls = server.ssl_context is not None
    log.info("h2gate %s serving %s app %s (app loop: %s)", __version__, interface, config.app, server.runner.name)
    for sock in server.sockets:
        address = display_address(sock, tls)
        if tls:
            log.info("listening on %s (TLS, ALPN h2)", address)
        else:
            log.info(
                "listening on %s (cleartext HTTP/2, h2c prior knowledge; browsers only speak HTTP/2 over TLS: "
                "use --certfile/--keyfile or --self-signed for them)",
                address,
            )


def run(config: Config) -> int:
    """Serve until shut down; returns the process exit code. Raises StartupError."""
    from h2gate.logs import setup_logging

    setup_logging(config.log_level, config.access_log)
    binds = [parse_bind(b) for b in config.bind]
    assert config.app is not None
    app = as_asgi3(import_app(config.app, factory=config.factory, app_dir=config.app_dir))
    ssl_context = build_ssl_context(config)
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            sockets.append(open_socket(bind, config.backlog))
        runner = make_runner(app, config.loop)
        try:
            server = Server(config, runner, sockets, ssl_context, on_ready=lambda s: announce(config, s, "ASGI"))
            trio.run(server.serve)
        finally:
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
