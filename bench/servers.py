"""What the bench scripts share: certificates, starting and stopping a server, readiness, memory, h2load.

bench/run.py (the load comparison) and bench/soak.py (the soak run) both
start real servers on a free 127.0.0.1 port with a throwaway certificate,
wait until one real HTTP/2 request is answered, watch their memory and drive
them with h2load; the helpers for that live here so neither script copies
the other.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
HELLO = b"Hello, world!"


# --------------------------------------------------------------------------- certificates


def make_cert(directory: Path) -> tuple[Path, Path]:
    """Write a throwaway certificate for 127.0.0.1/localhost from a trustme CA; return (certfile, keyfile).

    The CA goes to ``directory / "ca.pem"`` for clients that verify the server.
    """
    import trustme

    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf = ca.issue_cert(HOST, "localhost")
    leaf.private_key_pem.write_to_path(str(key_path))
    with cert_path.open("wb") as fh:
        for blob in leaf.cert_chain_pems:
            fh.write(blob.bytes())
    return cert_path, key_path


# --------------------------------------------------------------------------- servers


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a script's cleanup (stopping its server) runs either way."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Callable[[int, Path, Path], list[str]]
    module: str  # importable module that must exist for the server to be tried ("" for a program on PATH)
    #: further modules the server needs (e.g. zttp under Uvicorn); their versions are shown beside the main one
    extras: tuple[str, ...] = ()
    #: a last check before starting it: None when it can run here, else why not (printed as the skip reason)
    check: Callable[[], str | None] | None = None
    #: what the version column says, when the modules are not this Python's (bench/peers.py installed_h2gate)
    describe: Callable[[], str] | None = None

    def unavailable(self) -> str | None:
        """None when this server can be started here, else the reason it is skipped."""
        import importlib.util

        for module in (self.module, *self.extras):
            if module and importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install -e '.[bench]')"
        return self.check() if self.check is not None else None

    def version(self) -> str:
        if self.describe is not None:
            return self.describe()
        main = module_version(self.module) if self.module else ""
        extra = ", ".join(f"{m} {module_version(m)}" for m in self.extras)
        return f"{main} ({extra})" if extra else main


def module_version(module: str) -> str:
    from importlib import metadata

    dist = {"hypercorn": "Hypercorn"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- server lifecycle


class ServerProcess:
    """One server under test, started in its own session so its workers can be stopped together."""

    def __init__(self, spec: ServerSpec, port: int, cert: Path, key: Path, log_path: Path) -> None:
        self.spec = spec
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            spec.argv(port, cert, key),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: int) -> None:
        # The server was started with start_new_session=True, so its process group id is its pid:
        # this reaches the server and any workers it spawned, and nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers may outlive their parent for a moment; make sure none is left behind.
        self._signal_group(signal.SIGKILL)
        self._log.close()


def h2_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """One HTTP/2 GET over TLS (ALPN h2) with the h2 library; return (status, body)."""
    import h2.config
    import h2.connection
    import h2.events

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # throwaway certificate; this request only proves readiness
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((HOST, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as sock:
        if sock.selected_alpn_protocol() != "h2":
            raise ConnectionError(f"ALPN negotiated {sock.selected_alpn_protocol()!r}, not h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", f"{HOST}:{port}")],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        status, body = 0, bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    return status, bytes(body)
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise ConnectionError(f"server ended the exchange: {event!r}")
            sock.sendall(conn.data_to_send())
        raise TimeoutError("no complete response in time")


def wait_ready(
    server: ServerProcess, timeout: float, path: str = "/", expect: tuple[int, bytes] = (200, HELLO)
) -> str | None:
    """Poll TCP connect + one real h2 GET of ``path`` until it answers ``expect`` (status, body); else say why."""
    deadline = time.monotonic() + timeout
    last = "no attempt made"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited with code {server.proc.returncode} before becoming ready"
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                pass
            status, body = h2_get(server.port, path, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if (status, body) == expect:
                return None
            last = f"unexpected response {status} {body[:40]!r}"
        except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # h2 protocol errors and the like: keep polling until the deadline
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    return f"not ready after {timeout:.0f}s ({last})"


# --------------------------------------------------------------------------- memory sampling


class RssSampler:
    """Sample the summed RSS of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        psutil = self._psutil
        total, count = 0, 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
                count += 1
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)
        self.max_procs = max(self.max_procs, count)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
            self.sample()


# --------------------------------------------------------------------------- h2load


@dataclass
class LoadResult:
    ok: bool = False
    error: str = ""
    protocol: str = ""
    seconds: float = 0.0
    req_per_s: float = 0.0
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    errored: int = 0
    timed_out: int = 0
    status_2xx: int = 0
    data_bytes: int = 0

    @property
    def failures(self) -> int:
        """Requests asked for that did not come back as a 2xx response."""
        return max(0, self.total - self.status_2xx)

    @property
    def body_mb_per_s(self) -> float:
        return self.data_bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_FINISHED = re.compile(r"^finished in ([\d.]+)(s|ms|us), ([\d.]+) req/s", re.M)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.M)
_TRAFFIC = re.compile(r"^traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data", re.M)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)


def parse_h2load(text: str) -> LoadResult:
    res = LoadResult()
    if m := _PROTOCOL.search(text):
        res.protocol = m.group(1)
    if m := _FINISHED.search(text):
        res.seconds = float(m.group(1)) * _UNITS[m.group(2)]
        res.req_per_s = float(m.group(3))
    if m := _REQUESTS.search(text):
        res.total, _started, _done, res.succeeded, res.failed, res.errored, res.timed_out = map(int, m.groups())
    if m := _STATUS.search(text):
        res.status_2xx = int(m.group(1))
    if m := _TRAFFIC.search(text):
        res.data_bytes = int(m.group(3))
    res.ok = bool(res.seconds and res.total)
    if not res.ok:
        res.error = "could not parse h2load output"
    elif res.protocol != "h2":
        # Every figure must be HTTP/2: a run that h2load cannot show was h2 is left out, not shown.
        res.ok = False
        res.error = f"h2load negotiated {res.protocol or 'no protocol it named'}, not h2: figure left out"
    return res


def run_h2load(url: str, requests: int, clients: int, streams: int, time_limit: float) -> LoadResult:
    argv = [
        "h2load", "--npn-list=h2", "-t", "1", "-c", str(clients), "-m", str(streams), "-n", str(requests),
        f"--connection-inactivity-timeout={max(1, int(time_limit))}", url,
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=time_limit, check=False)
    except subprocess.TimeoutExpired:
        return LoadResult(error=f"h2load killed after {time_limit:.0f}s time bound", total=requests)
    res = parse_h2load(done.stdout)
    if done.returncode != 0 and not res.error:
        res.error = f"h2load exit code {done.returncode}"
    if not res.ok:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        res.error = f"{res.error}: {tail[0]}"
    return res


def h2load_version() -> str:
    try:
        out = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"
