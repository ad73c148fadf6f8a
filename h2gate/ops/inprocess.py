"""h2gate serving an app object in this process, on a thread of its own: the engine of :mod:`h2gate.testing`.

The server is the real one (:func:`h2gate.ops.run.make_server`, the same
connection code, TLS and adapters as ``h2gate APP``), running ``trio.run`` in
a daemon thread on a fresh loopback port. It cannot watch signals there (only
the main thread can), so it is stopped by calling ``request_shutdown`` in its
own trio thread, which runs the usual graceful shutdown. Records the ``h2gate``
loggers emit meanwhile are kept, so a test can fail on a logged ERROR.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Mapping
from typing import Any

import trio

from h2gate.asgi.frames import check_frame_api
from h2gate.config import fields, load_config
from h2gate.errors import StartupError
from h2gate.net.binds import Bind, open_socket
from h2gate.ops.appload import detect_interface
from h2gate.ops.run import build_ssl_context, make_server
from h2gate.ops.server import Server

#: Seconds to wait for the server to accept connections (lifespan startup included).
START_TIMEOUT = 30.0
#: Seconds beyond graceful_timeout that stopping may take before it is reported as stuck.
STOP_MARGIN = 10.0
#: Options the in-process server uses unless the test says otherwise: tests should not wait 30 s at teardown.
TEST_DEFAULTS: Mapping[str, Any] = {"graceful_timeout": 5.0}
MISSING_EXTRAS = "h2gate.testing needs httpx (with HTTP/2) and trustme: pip install 'h2gate[testing]'"


class _Recorder(logging.Handler):
    """Keeps the WARNING-and-above records of the h2gate loggers (bounded)."""

    LIMIT = 1000

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self.LIMIT:
            self.records.append(record)


def _app_name(app: Any) -> str:
    return getattr(app, "__qualname__", None) or type(app).__qualname__


class InProcessServer:
    """One server on 127.0.0.1:<free port>; :meth:`start` it, then use ``url`` and the clients, then :meth:`stop`.

    ``ca_file`` is the PEM of the throwaway CA that signed the server certificate (None for h2c).
    """

    def __init__(
        self,
        app: Any,
        *,
        tls: bool,
        certfile: str | None = None,
        keyfile: str | None = None,
        ca_file: str | None = None,
        interface: str = "auto",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        name = _app_name(app)
        unknown = sorted(set(options or {}) - {f.name for f in fields()})
        if unknown:
            raise TypeError(f"unknown h2gate option(s) {', '.join(unknown)} (use the TOML keys of the options table)")
        given: dict[str, Any] = {**TEST_DEFAULTS, **(options or {})}
        given.update(app=f"<in-process {name}>", bind=["127.0.0.1:0"], interface=interface)
        if tls:
            if not (certfile and ca_file):
                raise TypeError("tls=True needs certfile (and keyfile) and the ca_file that signed it (ThrowawayCA)")
            given.update(certfile=certfile, keyfile=keyfile)
        # The test process's H2GATE_* variables are not this server's configuration.
        self.config = load_config(given, environ={})
        self.app = app
        self.interface = detect_interface(app, name) if interface == "auto" else interface
        self.tls = tls
        self.ca_file = ca_file
        self.host = "127.0.0.1"
        self.port = 0
        self.server: Server | None = None
        self._recorder = _Recorder()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._crash: BaseException | None = None
        self._clients: list[Any] = []

    # -- what the test uses ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def records(self) -> list[logging.LogRecord]:
        """WARNING-and-above records of the h2gate loggers since :meth:`start` (all servers of the process)."""
        return list(self._recorder.records)

    @property
    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self._recorder.records if r.levelno >= logging.ERROR]

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the throwaway CA, or None for h2c."""
        return ssl.create_default_context(cafile=self.ca_file) if self.tls else None

    def client(self, **kwargs: Any) -> Any:
        """An ``httpx.Client`` speaking HTTP/2 to this server (``base_url`` set); :meth:`stop` closes it."""
        httpx = _httpx()
        client = httpx.Client(**self._client_options(kwargs))
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> Any:
        """An ``httpx.AsyncClient`` like :meth:`client`; use it with ``async with`` (asyncio or trio)."""
        return _httpx().AsyncClient(**self._client_options(kwargs))

    def _client_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"base_url": self.url, "http2": True, "timeout": 30.0}
        if self.tls:
            options["verify"] = self.ssl_context()
        else:
            options["http1"] = False  # h2c by prior knowledge: httpx never upgrades
        options.update(kwargs)
        return options

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> InProcessServer:
        """Bind, start the server thread and wait until it accepts; raises StartupError if it cannot."""
        logger = logging.getLogger("h2gate")
        logger.addHandler(self._recorder)
        try:
            self._start()
        except BaseException:
            logger.removeHandler(self._recorder)
            raise
        return self

    def _start(self) -> None:
        config = self.config
        check_frame_api(config)
        ssl_context = build_ssl_context(config)
        sock = open_socket(Bind("tcp", host=self.host, port=0), config.backlog)
        self.port = sock.getsockname()[1]
        try:
            self.server = make_server(
                config, self.app, self.interface, [sock], ssl_context, self._on_ready, watch_signals=False
            )
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"h2gate-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise StartupError(f"the in-process server did not start within {START_TIMEOUT:g}s")
        failure = self._crash or self.server.failure
        if failure is not None or not self._thread.is_alive():
            self._thread.join(STOP_MARGIN)
            raise StartupError(f"the in-process server did not start: {failure or 'it stopped at once'}")

    def _on_ready(self, server: Server) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._ready.set()

    def _run(self) -> None:
        assert self.server is not None
        try:
            trio.run(self.server.serve)
        except BaseException as exc:  # reported by start()/stop() in the test's thread
            self._crash = exc
        finally:
            self._ready.set()
            self.server.runner.close()
            for sock in self.server.sockets:
                sock.close()

    def stop(self) -> None:
        """Graceful shutdown (as on SIGTERM) and wait for the thread; raises RuntimeError if it is stuck or crashed."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        thread = self._thread
        try:
            if thread is not None and thread.is_alive() and self._token is not None and self.server is not None:
                try:
                    trio.from_thread.run_sync(self.server.request_shutdown, trio_token=self._token)
                except trio.RunFinishedError:
                    pass
            if thread is not None:
                thread.join(self.config.graceful_timeout + STOP_MARGIN)
                if thread.is_alive():
                    raise RuntimeError(f"the in-process server on port {self.port} did not stop")
        finally:
            logging.getLogger("h2gate").removeHandler(self._recorder)
        if self._crash is not None:
            raise RuntimeError(f"the in-process server crashed: {self._crash!r}") from self._crash


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise RuntimeError(MISSING_EXTRAS) from None
    return httpx


class ThrowawayCA:
    """A trustme CA and a certificate for 127.0.0.1/localhost, written as PEM files under ``directory``."""

    def __init__(self, directory: str) -> None:
        try:
            import trustme
        except ImportError:
            raise RuntimeError(MISSING_EXTRAS) from None
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        self.ca_file = os.path.join(directory, "ca.pem")
        self.certfile = os.path.join(directory, "cert.pem")
        self.keyfile = os.path.join(directory, "key.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        with open(self.certfile, "wb") as fh:
            for pem in cert.cert_chain_pems:
                fh.write(pem.bytes())
        cert.private_key_pem.write_to_path(self.keyfile)
