"""The clients of the soak run (bench/soak.py): well-behaved ones and ones that misbehave within the limits.

Each client kind is a function that does one bounded round (a burst, a
connection's worth of requests, one stalled stream) and returns what happened
as ``(outcome, count)`` pairs; :func:`run_worker` calls it again and again in
its own thread until the soak ends. Waits are sliced so a stop request ends a
round within about a second. The misbehaving kinds check that the server
reaps them (a RST_STREAM or a close within the server's timeouts plus
``SLACK``): one that is not reaped is an anomaly the soak reports.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.settings
import httpx

from bench.h2client import H2Client, Stream
from bench.servers import HOST, run_h2load

#: Seconds past a server timeout by which a misbehaving client must have been reaped.
SLACK = 8.0
#: Rounds one worker runs at most, whatever the duration (a bound, not a target).
MAX_ROUNDS = 100_000
UPLOAD = os.urandom(256 * 1024)
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()

Outcomes = list[tuple[str, int]]


@dataclass(frozen=True)
class Routes:
    """Where the bundled app (tests/apps) answers small requests, uploads and downloads."""

    small: str
    small_body: bytes
    upload: str
    download: str  # a format string with {size}


ROUTES = {
    # apps.flow: one fixed key, so the app's per-key state stays one entry; failed sends just return
    "asgi": Routes("/hello", b"hello", "/upload?key=soak", "/download?key=soak&on_error=return&size={size}"),
    "wsgi": Routes("/cl?kind=list1", b"hello", "/upload?key=soak", "/download?key=soak&size={size}"),
}


@dataclass
class Ctx:
    """What every client needs: where the server is and how long its timeouts are."""

    port: int
    ca_pem: str
    routes: Routes
    send_timeout: float
    body_timeout: float
    stop: threading.Event
    stats: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, outcomes: Outcomes) -> None:
        with self.lock:
            for outcome, count in outcomes:
                self.stats[f"{kind}: {outcome}"] += count

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self.port}"


def _wait(client: H2Client, ctx: Ctx, ready: Callable[[], bool], bound: float) -> str:
    """Pump ``client`` until ``ready()``: "ok", "closed", "stopped" (the soak ended) or "timeout"."""
    deadline = time.monotonic() + bound
    while not ready():
        if ctx.stop.is_set():
            return "stopped"
        if client.eof:
            return "closed"
        if time.monotonic() > deadline:
            return "timeout"
        client.pump(0.2)
    return "ok"


def h2load_burst(ctx: Ctx) -> Outcomes:
    """A burst of small requests from h2load: 4 connections, 8 streams each."""
    res = run_h2load(ctx.base + ctx.routes.small, 800, 4, 8, 30.0)
    ctx.stop.wait(0.5)
    return [("requests ok", res.status_2xx), ("requests failed", res.failures)]


def httpx_session(ctx: Ctx) -> Outcomes:
    """One httpx HTTP/2 connection: small GETs, 256 KiB uploads and 1 MiB downloads, then it closes (churn)."""
    out: Counter[str] = Counter()
    verify = ssl.create_default_context(cafile=ctx.ca_pem)
    with httpx.Client(http2=True, verify=verify, timeout=15.0) as client:
        for i in range(12):
            if ctx.stop.is_set():
                break
            if i % 3 == 1:
                r = client.post(ctx.base + ctx.routes.upload, content=UPLOAD)
                good = r.status_code == 200 and r.json().get("sha256") == UPLOAD_SHA
                out["uploads ok" if good else "uploads wrong"] += 1
            elif i % 3 == 2:
                r = client.get(ctx.base + ctx.routes.download.format(size=1 << 20))
                good = r.status_code == 200 and len(r.content) == 1 << 20
                out["downloads ok" if good else "downloads wrong"] += 1
            else:
                r = client.get(ctx.base + ctx.routes.small)
                out["requests ok" if r.content == ctx.routes.small_body else "requests wrong"] += 1
            assert r.http_version == "HTTP/2", r.http_version
    return list(out.items())


def resetter(ctx: Ctx) -> Outcomes:
    """Reset downloads mid-response (and one before any answer), then prove the connection still serves."""
    out: Counter[str] = Counter()
    with H2Client(ctx.port, ca_pem=ctx.ca_pem) as client:
        for _ in range(4):
            sid = client.request("GET", ctx.routes.download.format(size=4 << 20), keep_data=False)
            stream = client.streams[sid]
            state = _wait(client, ctx, lambda s=stream: s.received > 0 or s.done, 15)
            if state != "ok":
                out[f"mid-response reset: {state}"] += 1
                return list(out.items())
            client.reset(sid)
            out["reset mid-response"] += 1
        client.reset(client.request("GET", ctx.routes.download.format(size=1 << 20)))
        out["reset before the answer"] += 1
        sid = client.request("GET", ctx.routes.small)
        state = _wait(client, ctx, lambda: client.streams[sid].done, 15)
        good = state == "ok" and client.streams[sid].body == ctx.routes.small_body
        out["served after resets" if good else f"after resets: {state}"] += 1
    ctx.stop.wait(0.2)
    return list(out.items())


def zero_window(ctx: Ctx) -> Outcomes:
    """Ask for a download with a receive window of 0 and never open it: --send-timeout must reset the stream."""
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with H2Client(ctx.port, ca_pem=ctx.ca_pem, settings=settings) as client:
        sid = client.request("GET", ctx.routes.download.format(size=1 << 20))
        stream: Stream = client.streams[sid]
        state = _wait(client, ctx, lambda: stream.done, ctx.send_timeout + SLACK)
        if state == "ok" and stream.reset is not None:
            return [("reaped (RST_STREAM)", 1)]
        return [("stopped" if state == "stopped" else f"ANOMALY not reaped ({state})", 1)]


def stop_reading(ctx: Ctx) -> Outcomes:
    """Open huge windows, ask for 64 MiB and stop reading the socket: --send-timeout must close the connection."""
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
    client = H2Client(ctx.port, ca_pem=ctx.ca_pem, settings=settings)
    try:
        client.h2.increment_flow_control_window(2**30)
        client.request("GET", ctx.routes.download.format(size=64 << 20), keep_data=False)
        if ctx.stop.wait(ctx.send_timeout + 3):
            return [("stopped", 1)]
        return [(_drain_to_eof(client.sock, SLACK), 1)]
    finally:
        client.sock.close()


def _drain_to_eof(sock: socket.socket, bound: float) -> str:
    """Read and drop what the server had buffered; say whether the server had closed the connection."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return "reaped (closed)"
        except (TimeoutError, ssl.SSLWantReadError):
            return "ANOMALY still open, nothing sent"
        except (ConnectionError, ssl.SSLError):
            return "reaped (closed)"
    return "ANOMALY still sending"


def body_stall(ctx: Ctx) -> Outcomes:
    """Start an upload and stop sending: --body-timeout must reset the stream."""
    with H2Client(ctx.port, ca_pem=ctx.ca_pem) as client:
        sid = client.request("POST", ctx.routes.upload, end_stream=False)
        client.send_data(sid, b"x" * 1000)
        stream = client.streams[sid]
        state = _wait(client, ctx, lambda: stream.done, ctx.body_timeout + SLACK)
        if state == "ok" and stream.reset is not None:
            return [("reaped (RST_STREAM)", 1)]
        return [("stopped" if state == "stopped" else f"ANOMALY not reaped ({state}, {stream.status})", 1)]


def churn(ctx: Ctx) -> Outcomes:
    """Short connections: one request and a GOAWAY; a bare TCP connect and close; a handshake and close."""
    out: Counter[str] = Counter()
    for i in range(10):
        if ctx.stop.is_set():
            break
        if i % 5 == 3:
            socket.create_connection((HOST, ctx.port), timeout=5).close()
            out["bare TCP connect, closed"] += 1
        elif i % 5 == 4:
            tls = ssl.create_default_context(cafile=ctx.ca_pem)
            tls.set_alpn_protocols(["h2"])
            with (
                socket.create_connection((HOST, ctx.port), timeout=5) as raw,
                tls.wrap_socket(raw, server_hostname="localhost"),
            ):
                out["TLS handshake, closed before the preface"] += 1
        else:
            with H2Client(ctx.port, ca_pem=ctx.ca_pem) as client:
                r = client.get(ctx.routes.small, timeout=15)
                out["one request, GOAWAY" if r.body == ctx.routes.small_body else "one request: wrong answer"] += 1
        ctx.stop.wait(0.05)
    return list(out.items())


#: client kind -> threads running it
CLIENTS: dict[str, tuple[Callable[[Ctx], Outcomes], int]] = {
    "h2load": (h2load_burst, 1),
    "httpx": (httpx_session, 2),
    "reset": (resetter, 1),
    "zero-window": (zero_window, 2),
    "stop-reading": (stop_reading, 1),
    "body-stall": (body_stall, 1),
    "churn": (churn, 1),
}


def run_worker(kind: str, ctx: Ctx) -> None:
    """Run one client kind round after round until the soak stops; a client-side failure is counted, not fatal."""
    func = CLIENTS[kind][0]
    for _ in range(MAX_ROUNDS):
        if ctx.stop.is_set():
            return
        try:
            ctx.record(kind, func(ctx))
        except Exception as exc:  # a timeout or refused connection under load: count it and go on
            ctx.record(kind, [(f"client error {type(exc).__name__}", 1)])
            ctx.stop.wait(0.5)
