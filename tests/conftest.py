"""Shared fixtures: certificates from a throwaway CA, and a real h2gate process on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
LISTEN_RE = re.compile(r"listening on (\S+)")


@dataclass
class Certs:
    ca_pem: str
    cert_pem: str
    key_pem: str
    ca: trustme.CA


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    d = tmp_path_factory.mktemp("certs")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        with open(d / "cert.pem", "ab") as fh:
            fh.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    return Certs(str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"), ca)


#: The HTTP/2 codec of every server a test starts (``--codec``): h2 unless the run says otherwise.
#: tests/run.sh runs the conformance and attack suites a second time with ``H2GATE_CODEC=ngh2``.
SERVER_CODEC = os.environ.get("H2GATE_CODEC") or "h2"


def pytest_report_header() -> str:
    return f"h2gate servers started by the tests: --codec {SERVER_CODEC} (H2GATE_CODEC)"


class ServerProcess:
    """A running ``python -m h2gate`` with its log captured line by line."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path = TESTS,
        *,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``command`` replaces ``python -m h2gate`` (e.g. a wrapper that sets up inherited sockets)."""
        self.args = args
        full_env = {**os.environ, "H2GATE_CODEC": SERVER_CODEC, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("H2GATE_CONFIG", None)
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "h2gate"]), *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **({"pass_fds": pass_fds} if pass_fds else {}),  # type: ignore[arg-type]
        )
        self.lines: list[str] = []
        self.urls: list[str] = []
        self.signalled = False
        self._ready = threading.Event()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                m = LISTEN_RE.search(line)
                if m:
                    self.urls.append(m.group(1))
                self._cond.notify_all()
        with self._cond:
            self._ready.set()
            self._cond.notify_all()

    def wait_ready(self, count: int = 1, timeout: float = 20) -> ServerProcess:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.urls) < count:
                if self.proc.poll() is not None and self._ready.is_set():
                    raise RuntimeError("h2gate exited early:\n" + self.output)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("h2gate did not start:\n" + self.output)
                self._cond.wait(left)
        return self

    def wait_for_log(self, pattern: str, timeout: float = 10) -> str:
        """Block until a log line matches ``pattern`` (a regex); return that line."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self._ready.is_set()):
                    raise TimeoutError(f"no log line matching {pattern!r}:\n" + self.output)
                self._cond.wait(left)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.signalled = True
            self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop the server (unless a test already signalled it) and return its exit code."""
        if not self.signalled or signum == signal.SIGKILL:
            self.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@pytest.fixture
def serve(certs: Certs) -> Iterator[object]:
    """``serve(app, *flags, tls=False, env=None)`` starts h2gate on 127.0.0.1:0 and waits for it."""
    procs: list[ServerProcess] = []

    def start(
        app: str,
        *flags: str,
        tls: bool = False,
        env: dict[str, str] | None = None,
        bind: bool = True,
        wait: bool = True,
    ) -> ServerProcess:
        args = [app, *flags]
        if bind:
            args += ["-b", "127.0.0.1:0"]
        if tls:
            args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
        proc = ServerProcess(args, env)
        procs.append(proc)
        return proc.wait_ready() if wait else proc

    yield start
    for proc in procs:
        if proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


def h2c_client(**kwargs: object) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=30, **kwargs)  # type: ignore[arg-type]


def tls_client(certs: Certs, **kwargs: object) -> httpx.Client:
    return httpx.Client(http2=True, verify=certs.ca_pem, timeout=30, **kwargs)  # type: ignore[arg-type]
