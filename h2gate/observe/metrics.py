"""Prometheus metrics (``--metrics-bind``), written with ``prometheus_client``.

Theory of operation: the server calls ``metrics.recorder.<event>()`` at a few
points (connection accepted, stream opened, reset, GOAWAY sent, ...). With
metrics off, ``recorder`` is an :class:`Off` whose methods do nothing, so the
hot path pays one attribute lookup and an empty call. :func:`start` replaces it
with a :class:`Recorder` holding the real metrics. Call sites must write
``metrics.recorder.x()`` (never import ``recorder`` by name) to see the swap.

The endpoint is a small ``http.server`` HTTP/1.1 server in a daemon thread on
its own socket, answering with prometheus_client's exposition (Prometheus
scrapes HTTP/1.1; the app's binds speak HTTP/2 only). Every path answers with
the metrics; ``/metrics`` is the documented one.

Several workers (``-w N``): the supervisor runs with the hooks from
:func:`supervisor_hooks`, which call :func:`prepare_multiprocess` (a temporary
``PROMETHEUS_MULTIPROC_DIR`` put in every worker's environment) and
:func:`serve_supervisor_metrics` (the endpoint, summing the workers' files),
then :func:`worker_exited` when a worker ends and :func:`count_worker_restart`
when a crashed one is replaced. A worker records into the files and serves nothing.

Every ``h2gate_*`` series a worker writes carries ``worker="<slot>"`` (``"0"``
in a single process), so one worker's share can be told apart; ``sum without
(worker)`` gives the totals. Gauges are created at 0 for every label value when
a process starts, so a series reads 0 rather than vanishing after a reload.
Process metrics and build info: :mod:`h2gate.observe.procmetrics`.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from h2gate.config import Config
from h2gate.errors import ConfigError, StartupError

if TYPE_CHECKING:
    from h2gate.net.negotiate import H2CUpgrade, WebSocketUpgrade
    from h2gate.net.transport import Transport

log = logging.getLogger("h2gate.error")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Set (to "worker") in a worker's environment by :func:`prepare_multiprocess`.
ROLE_ENV = "H2GATE_METRICS_ROLE"
#: The worker's slot, the value of the ``worker`` label (set by the supervisor's hooks).
SLOT_ENV = "H2GATE_METRICS_WORKER"
TRANSPORTS = ("h2-tls", "h2c", "h2c-upgrade", "websocket-http1")
EVICTIONS = ("handshake", "idle")
INSTALL_HINT = "--metrics-bind needs prometheus_client: pip install 'h2gate[metrics]'"
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


def transport_kind(transport: Transport, upgrade: H2CUpgrade | WebSocketUpgrade | None) -> str:
    """The ``transport`` label of a new connection: h2-tls, h2c, h2c-upgrade or websocket-http1."""
    from h2gate.net.negotiate import WebSocketUpgrade
    from h2gate.net.transport import TLSTransport

    if isinstance(upgrade, WebSocketUpgrade):
        return "websocket-http1"
    if isinstance(transport, TLSTransport):
        return "h2-tls"
    return "h2c-upgrade" if upgrade is not None else "h2c"


class Off:
    """The recorder while metrics are off: every event is a no-op."""

    def connection_opened(self, transport: str) -> None:
        pass

    def connection_closed(self, transport: str) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def stream_reset(self, side: str, code: int) -> None:
        pass

    def request_done(self, status: int, duration: float) -> None:
        pass

    def bytes_received(self, size: int) -> None:
        pass

    def bytes_sent(self, size: int) -> None:
        pass

    def flow_control_stall(self) -> None:
        pass

    def goaway_sent(self, code: int) -> None:
        pass

    def connection_rejected(self) -> None:
        pass

    def connection_evicted(self, reason: str) -> None:
        pass

    def reloaded(self, ok: bool) -> None:
        pass


class Recorder(Off):
    """The live metrics, registered in ``registry`` (in a worker, written to the multiprocess files too)."""

    def __init__(self, registry: Any, worker: str = "0", *, count_reloads: bool = True) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self._count_reloads = count_reloads  # a worker's certificate reloads are not the supervisor's reloads

        class Bound:
            """A metric whose ``worker`` label is already set: ``labels()`` takes the others."""

            def __init__(self, metric: Any) -> None:
                self.metric = metric

            def labels(self, *values: str) -> Any:
                return self.metric.labels(worker, *values)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            metric = Counter(name, doc, ("worker", *labels), registry=registry)
            return Bound(metric) if labels else metric.labels(worker)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            metric = Gauge(name, doc, ("worker", *labels), registry=registry, multiprocess_mode="livesum")
            return Bound(metric) if labels else metric.labels(worker)

        self.connections_open = gauge("h2gate_connections_open", "Connections open now.", ("transport",))
        self.connections = counter("h2gate_connections", "Connections served, by transport.", ("transport",))
        self.streams_open = gauge("h2gate_streams_open", "HTTP/2 streams being served now.")
        self.streams = counter("h2gate_streams", "HTTP/2 streams served.")
        self.resets = counter("h2gate_stream_resets", "RST_STREAM by side and error code.", ("side", "code"))
        self.requests = counter("h2gate_requests", "Requests by response status class.", ("status_class",))
        self.duration = Histogram(
            "h2gate_request_duration_seconds",
            "Time from request to end of response.",
            ("worker",),
            registry=registry,
            buckets=DURATION_BUCKETS,
        ).labels(worker)
        self.received = counter("h2gate_received_bytes", "HTTP/2 bytes read from clients (after TLS).")
        self.sent = counter("h2gate_sent_bytes", "HTTP/2 bytes written to clients (before TLS).")
        self.stalls = counter("h2gate_flow_control_stalls", "Response sends that waited for the client's window.")
        self.goaways = counter("h2gate_goaways_sent", "GOAWAY frames sent, by error code (the reason).", ("code",))
        self.rejected = counter("h2gate_connections_rejected", "New connections refused at --max-connections.")
        self.evicted = counter(
            "h2gate_connections_evicted", "Connections closed to admit a new one, by what they were.", ("reason",)
        )
        self.reloads = counter("h2gate_reloads", "Reloads (SIGHUP) by result.", ("result",))
        self._status_classes = {n: self.requests.labels(f"{n}xx") for n in range(1, 6)}
        self._no_status = self.requests.labels("none")
        # Every series exists from the start, at 0: a scrape after a reload reads 0, not nothing.
        for transport in TRANSPORTS:
            self.connections_open.labels(transport)
            self.connections.labels(transport)
        for reason in EVICTIONS:
            self.evicted.labels(reason)
        if count_reloads:
            for result in ("ok", "failed"):
                self.reloads.labels(result)

    def connection_opened(self, transport: str) -> None:
        self.connections.labels(transport).inc()
        self.connections_open.labels(transport).inc()

    def connection_closed(self, transport: str) -> None:
        self.connections_open.labels(transport).dec()

    def stream_opened(self) -> None:
        self.streams.inc()
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_open.dec()

    def stream_reset(self, side: str, code: int) -> None:
        self.resets.labels(side, _code_name(code)).inc()

    def request_done(self, status: int, duration: float) -> None:
        self._status_classes.get(status // 100, self._no_status).inc()
        self.duration.observe(duration)

    def bytes_received(self, size: int) -> None:
        self.received.inc(size)

    def bytes_sent(self, size: int) -> None:
        self.sent.inc(size)

    def flow_control_stall(self) -> None:
        self.stalls.inc()

    def goaway_sent(self, code: int) -> None:
        self.goaways.labels(_code_name(code)).inc()

    def connection_rejected(self) -> None:
        self.rejected.inc()

    def connection_evicted(self, reason: str) -> None:
        self.evicted.labels(reason).inc()

    def reloaded(self, ok: bool) -> None:
        if self._count_reloads:
            self.reloads.labels("ok" if ok else "failed").inc()


recorder: Off = Off()
_servers: list[Any] = []  # the endpoint servers this process started


def _require_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise StartupError(INSTALL_HINT) from None


def _endpoint(host: str, port: int, registry: Any) -> Any:
    """An HTTP/1.1 (keep-alive) server answering every GET with the registry's metrics, serving in a thread.

    prometheus_client's own ``start_http_server`` answers HTTP/1.0; this is
    the same exposition (its ``choose_encoder``) with a Content-Length.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client.exposition import choose_encoder

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # idle keep-alive connections end

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)  # the same headers as GET (http.server would answer HEAD with text/html)

        def _answer(self, *, head: bool) -> None:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(registry)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    httpd = Server((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, name="h2gate-metrics", daemon=True).start()
    return httpd


def _serve(config: Config, registry: Any) -> str:
    """Start the HTTP/1.1 endpoint thread; returns its URL. Raises StartupError."""
    from h2gate.net.binds import parse_bind

    assert config.metrics_bind is not None
    bind = parse_bind(config.metrics_bind)
    if bind.kind != "tcp":
        raise ConfigError(f"--metrics-bind {config.metrics_bind!r}: HOST:PORT is needed")
    if config.metrics_bind in config.bind and bind.port != 0:
        raise ConfigError(f"--metrics-bind {config.metrics_bind} is also an application --bind")
    try:
        httpd = _endpoint(bind.host, bind.port, registry)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {config.metrics_bind}: {exc.strerror or exc}") from None
    _servers.append(httpd)
    host, port = httpd.server_address[:2]
    url = f"http://[{host}]:{port}/metrics" if ":" in str(host) else f"http://{host}:{port}/metrics"
    log.info("serving Prometheus metrics at %s (HTTP/1.1)", url)
    return url


def start(config: Config) -> str | None:
    """Turn metrics on for this process as ``config`` says; returns the endpoint URL if this process serves it.

    A worker started by the supervisor (see :func:`prepare_multiprocess`)
    records into the shared directory and serves nothing. Raises StartupError.
    """
    global recorder
    if not config.metrics_bind:
        return None
    _require_client()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get(ROLE_ENV) == "worker" and os.environ.get(MULTIPROC_ENV):
        # The values go to the shared files; the supervisor serves them.
        recorder = Recorder(registry, os.environ.get(SLOT_ENV, "0"), count_reloads=False)
        return None
    from prometheus_client import ProcessCollector

    from h2gate.observe.procmetrics import BuildInfoCollector

    recorder = Recorder(registry)
    ProcessCollector(registry=registry)
    registry.register(BuildInfoCollector())  # type: ignore[arg-type]
    return _serve(config, registry)


def stop() -> None:
    """Back to the no-op recorder, and close the endpoints this process serves."""
    global recorder, _supervisor
    recorder = Off()
    _supervisor = None
    while _servers:
        httpd = _servers.pop()
        httpd.shutdown()
        httpd.server_close()


# -- the supervisor's side (several workers) -----------------------------------------------------

_multiproc_dir: str | None = None
_supervisor: Any = None  # the SupervisorCollector (procmetrics) while serving


def prepare_multiprocess(config: Config) -> dict[str, str]:
    """Environment for worker processes: a fresh multiprocess directory (empty dict with metrics off).

    Call before starting any worker. Raises StartupError if prometheus_client is missing.
    """
    global _multiproc_dir
    if not config.metrics_bind:
        return {}
    _require_client()
    if _multiproc_dir is None:
        _multiproc_dir = tempfile.mkdtemp(prefix="h2gate-metrics-")
        atexit.register(cleanup_multiprocess)
    return {MULTIPROC_ENV: _multiproc_dir, ROLE_ENV: "worker"}


def serve_supervisor_metrics(config: Config) -> str | None:
    """Serve the workers' summed metrics on ``--metrics-bind``; returns the URL. Raises StartupError."""
    if not config.metrics_bind:
        return None
    _require_client()
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if _multiproc_dir is None:
        raise RuntimeError("prepare_multiprocess() must run before serve_supervisor_metrics()")
    from h2gate.observe.procmetrics import SupervisorCollector

    global _supervisor
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_multiproc_dir)
    _supervisor = SupervisorCollector()
    registry.register(_supervisor)  # type: ignore[arg-type]
    return _serve(config, registry)


def worker_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters keep counting in the sum)."""
    if _multiproc_dir is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, _multiproc_dir)


def count_worker_restart() -> None:
    """The supervisor started a replacement for a worker that died."""
    if _supervisor is not None:
        _supervisor.count_restart()


class SupervisorMetrics:
    """The supervisor's hooks (see ``h2gate.ops.supervisor.SupervisorHooks``) with metrics on."""

    def __init__(self, config: Config) -> None:
        self.env = prepare_multiprocess(config)
        serve_supervisor_metrics(config)

    def worker_env(self, env: dict[str, str], slot: int, generation: int) -> None:
        env.update(self.env)
        env[SLOT_ENV] = str(slot)

    def worker_started(self, pid: int, slot: int) -> None:
        if _supervisor is not None:
            _supervisor.worker_started(pid, slot)

    def worker_exited(self, pid: int, code: int, restarting: bool) -> None:
        worker_exited(pid)
        if _supervisor is not None:
            _supervisor.worker_exited(pid, restarting)

    def workers_changed(self, count: int) -> None:
        if _supervisor is not None:
            _supervisor.target = count

    def reloaded(self, ok: bool) -> None:
        if _supervisor is not None:
            _supervisor.reloaded(ok)


def supervisor_hooks(config: Config) -> Any:
    """Hooks for ``Supervisor(hooks=...)``: None (the defaults) with metrics off. Raises StartupError."""
    return SupervisorMetrics(config) if config.metrics_bind else None


def cleanup_multiprocess() -> None:
    """Remove the multiprocess directory once every worker has exited."""
    global _multiproc_dir
    if _multiproc_dir is not None:
        shutil.rmtree(_multiproc_dir, ignore_errors=True)
        _multiproc_dir = None
