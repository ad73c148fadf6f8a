"""Turning a Config into a running server: load, check, bind, announce, serve.

One process (the default) serves by itself. With --workers N (or --supervise,
--max-requests, --reload) this process becomes the supervisor
(:mod:`h2gate.ops.supervisor`): it opens the sockets and runs workers, each of
which comes back here through :func:`serve_sockets`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import trio

from h2gate.asgi.frames import check_frame_api
from h2gate.asgi.runner import AppRunner, make_runner
from h2gate.config import Config
from h2gate.errors import StartupError
from h2gate.net.binds import Bind, close_sockets, open_socket, open_sockets, parse_bind, reuse_port_supported
from h2gate.observe import metrics
from h2gate.ops import gctune, signals, systemd
from h2gate.ops.appload import as_asgi3, detect_interface, import_app
from h2gate.ops.banner import print_startup_block
from h2gate.ops.listeners import SlotSockets
from h2gate.ops.resources import raise_open_file_limit
from h2gate.ops.server import Server
from h2gate.protocol import codecs

log = logging.getLogger("h2gate.error")


def build_ssl_context(config: Config) -> Any:
    """The certificate store (:class:`h2gate.tls.certstore.CertStore`) for TLS binds, or None for cleartext.

    Raises ConfigError.
    """
    from h2gate.tls import certstore
    from h2gate.tls import context as tls

    if not config.use_tls:
        return None
    keylog = os.environ.get("SSLKEYLOGFILE") or None
    if keylog:
        log.warning("SSLKEYLOGFILE is set: TLS session keys are written to %s (anyone with it can decrypt)", keylog)
    if config.self_signed:
        options = certstore.tls_options(config, keylog)
        # A supervisor made one pair for all workers; the same pair again for each new ticket key.
        pem = os.environ.get(tls.SELF_SIGNED_ENV) or tls.make_self_signed()
        context, fingerprint = tls.self_signed_context(options=options, pem=pem)
        log.warning(
            "USING A SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost (SHA-256 %s): "
            "clients will not trust it; never use --self-signed in production",
            fingerprint,
        )
        contexts = iter([certstore.Contexts(context)])

        def self_signed(hook: Any) -> certstore.Contexts:
            return next(contexts, None) or certstore.Contexts(tls.self_signed_context(options=options, pem=pem)[0])

        return certstore.CertStore(self_signed, reloadable=False)
    return certstore.load_cert_store(config, keylog)


def _describe_runtime(config: Config, interface: str) -> str:
    return f"{config.threads} worker threads" if interface == "wsgi" else f"app loop: {config.loop}"


def make_server(
    config: Config,
    loaded: Any,
    interface: str,
    sockets: list[socket.socket],
    ssl_context: Any,
    on_ready: Callable[[Server], None] | None = None,
    *,
    watch_signals: bool = True,
) -> Server:
    """A Server for an already loaded app object (``interface``: "asgi" or "wsgi"); also used by h2gate.testing.

    The caller closes ``server.runner`` once the server has stopped. Raises StartupError.
    """
    codecs.resolve(config.codec)  # --codec ngh2 without ngh2: one line naming what to install
    wsgi = None
    if interface == "wsgi":
        from h2gate.wsgi import WSGIHandler

        wsgi = WSGIHandler(loaded, config)
        runner = AppRunner(as_asgi3(loaded))  # never called: WSGI has no lifespan
    else:
        runner = make_runner(as_asgi3(loaded), config.loop)
    try:
        return Server(config, runner, sockets, ssl_context, on_ready=on_ready, wsgi=wsgi, watch_signals=watch_signals)
    except BaseException:
        runner.close()
        raise


def serve_sockets(
    config: Config,
    open_listeners: Callable[[], list[socket.socket]],
    *,
    on_ready: Callable[[str, str], None],
    request_hook: Callable[[], None] | None = None,
    on_stopping: Callable[[], object] | None = None,
    signal_hooks: signals.Hooks | None = None,
) -> int:
    """Import the app, then open the sockets and serve until shut down; returns the exit code.

    The app and certificates load before ``open_listeners()`` binds, so their
    errors come first. ``on_ready(interface, how)`` runs once every listener
    accepts. Shared by the single process and by workers. Raises StartupError.
    """
    assert config.app is not None
    loaded = import_app(config.app, factory=config.factory, app_dir=config.app_dir)
    interface = detect_interface(loaded, config.app) if config.interface == "auto" else config.interface
    ssl_context = build_ssl_context(config)
    sockets = open_listeners()
    how = _describe_runtime(config, interface)
    server = make_server(config, loaded, interface, sockets, ssl_context, lambda s: on_ready(interface.upper(), how))
    try:
        server.request_hook = request_hook
        server.on_stopping = on_stopping
        if signal_hooks is not None:
            server.signal_hooks = signal_hooks
        gctune.tune()
        trio.run(server.serve)
    finally:
        # The server has stopped; a repeated SIGTERM from a supervisor must
        # not kill the last bounded clean-up steps.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.runner.close()
    if server.failure is not None:
        raise server.failure
    return server.exit_code


def check(config: Config) -> list[str]:
    """``--check-config``: everything a start checks short of binding, as lines to print. Raises StartupError.

    The binds are parsed but not bound (a running server may hold them), the certificates and keys are
    loaded, and the app is imported (its module runs, as it would at startup).
    """
    assert config.app is not None
    binds = [parse_bind(text) for text in config.bind]
    check_frame_api(config)
    codec = codecs.describe(config.codec)
    build_ssl_context(config)
    loaded = import_app(config.app, factory=config.factory, app_dir=config.app_dir)
    interface = detect_interface(loaded, config.app) if config.interface == "auto" else config.interface
    from h2gate.ops.banner import tls_summary

    return [
        f"app {config.app}: {interface.upper()} ({_describe_runtime(config, interface)})",
        f"TLS: {tls_summary(config) or 'off (cleartext HTTP/2: h2c)'}",
        f"HTTP/2 codec: {codec}",
        f"binds: {', '.join(str(b) for b in binds)} (not bound by --check-config)",
    ]


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write our PID to ``path`` for the duration; raises StartupError if it cannot be written."""
    if not path:
        yield
        return
    try:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(f"cannot write --pid file {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def listening_sockets(config: Config, *, reserve_tcp: bool = False) -> list[tuple[Bind, socket.socket]]:
    """systemd's sockets when socket-activated (--bind is then ignored), else the --bind addresses.

    ``reserve_tcp``: our own TCP binds are reserved for SO_REUSEPORT twins (h2gate/ops/listeners.py).
    """
    activated = systemd.listen_fds()
    if not activated:
        return open_sockets(config.bind, config.backlog, reserve_tcp=reserve_tcp)
    names = ", ".join(f"fd {a.fd} ({a.name})" for a in activated)
    log.info("socket activation: using %d socket(s) from systemd: %s; --bind is ignored", len(activated), names)
    opened: list[tuple[Bind, socket.socket]] = []
    try:
        for a in activated:
            bind = Bind("fd", fd=a.fd)
            opened.append((bind, open_socket(bind, config.backlog)))
    except BaseException:
        close_sockets(opened)
        raise
    return opened


def uses_supervisor(config: Config) -> bool:
    return config.workers > 1 or config.supervise or config.max_requests > 0 or config.reload


def run(config: Config, cli_values: Mapping[str, Any] | None = None) -> int:
    """Serve until shut down; returns the process exit code. Raises StartupError.

    ``cli_values`` (the options typed on the command line) are handed to
    worker processes, which re-read the config file and environment themselves.
    """
    from h2gate.observe.logs import setup_logging

    setup_logging(config.log_level, config.access_log, config)
    raise_open_file_limit()  # before any socket; workers inherit it (h2gate/ops/resources.py)
    for text in config.bind:
        parse_bind(text)  # a bad bind is a startup error even when socket activation ignores it
    check_frame_api(config)  # --enable-frame-api: loopback only, with a loud warning
    codecs.resolve(config.codec)  # --codec ngh2 without ngh2 installed: before any socket or worker
    if uses_supervisor(config):
        from h2gate.ops.supervisor import Supervisor

        with pid_file(config.pid):
            reserve = reuse_port_supported()
            shared = listening_sockets(config, reserve_tcp=reserve)
            slots = SlotSockets(shared, config.backlog, reserved=reserve)
            try:
                slots.open_slots(config.workers)
                hooks = metrics.supervisor_hooks(config)  # --metrics-bind: served here, summed over workers
                supervisor = Supervisor(config, dict(cli_values or {}), slots, hooks=hooks)
                code = supervisor.run()
                if supervisor.failure is not None:
                    raise StartupError(supervisor.failure)
                return code
            finally:
                slots.close()
                close_sockets(shared)
    with pid_file(config.pid):
        opened: list[tuple[Bind, socket.socket]] = []

        def open_listeners() -> list[socket.socket]:
            opened.extend(listening_sockets(config))
            return [s for _, s in opened]

        def ready(interface: str, how: str) -> None:
            sockets = [s for _, s in opened]
            print_startup_block(config, sockets, interface, how, "1 (single process; SIGHUP reloads certificates)")
            systemd.ready()

        try:
            notify = signals.Hooks(on_reloading=systemd.reloading, on_reloaded=systemd.ready)
            return serve_sockets(
                config, open_listeners, on_ready=ready, on_stopping=systemd.stopping, signal_hooks=notify
            )
        finally:
            close_sockets(opened)
