"""Worker processes: how the supervisor starts one, and what runs inside it.

Why spawn (``python -m h2gate`` in a fresh interpreter) rather than fork:
every worker must import the application itself, so that a reload really
loads new code and an import error belongs to one worker, not to the
supervisor; the supervisor never imports the app, trio or threads, so there
is nothing a fork could copy in a bad state. The listening sockets, opened
once by the supervisor, are inherited under the same descriptor numbers
(``pass_fds``) and used as ``fd://`` binds.

The worker learns what to do from one environment variable, ``WORKER_ENV``
(JSON): the options given on the command line (the worker re-reads the
config file and the environment itself, so a reload picks up their
changes), the socket descriptors, and the write end of a pipe on which it
reports to the supervisor, one JSON object per line:

* ``{"event": "ready", "interface": "ASGI", "how": "..."}`` once it accepts;
* ``{"event": "failed", "error": "..."}`` when it cannot start (the app does not
  import, a certificate is missing): the supervisor, not each worker, says so, once;
* ``{"event": "retire", "requests": N}`` when it has served --max-requests
  (it keeps serving until the supervisor, with a replacement ready, sends
  SIGTERM, so no moment passes without a worker accepting);
* ``{"event": "stopping", "signal": "SIGTERM"}`` when a stop signal reached
  it: if the supervisor did not send it, an operator did, and the
  supervisor starts a replacement at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("h2gate.error")

WORKER_ENV = "_H2GATE_WORKER"


@dataclass
class WorkerProcess:
    """The supervisor's handle on one worker."""

    proc: subprocess.Popen[bytes]
    slot: int
    generation: int
    report_fd: int  # read end of the report pipe, -1 once closed
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    interface: str = ""
    how: str = ""
    error: str | None = None  # why it could not start, as it reported
    #: The worker this one will replace once ready (--max-requests, crash restart).
    replaces: WorkerProcess | None = None
    retiring: bool = False  # asked to be replaced
    stop_sent: float | None = None  # monotonic time of the graceful SIGTERM
    operator_stop: str | None = None  # a stop signal someone else sent it (its name)
    killed: bool = False  # SIGKILL sent
    _buffer: bytes = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_reports(self) -> list[dict[str, Any]]:
        """Read what is available on the pipe; closes it at end of file."""
        try:
            chunk = os.read(self.report_fd, 65536)
        except BlockingIOError:
            return []
        except OSError:
            chunk = b""
        if not chunk:
            self.close_pipe()
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > 65536:  # a worker does not write this; do not grow without bound
            self._buffer = b""
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    out.append(message)
        return out

    def close_pipe(self) -> None:
        if self.report_fd >= 0:
            os.close(self.report_fd)
            self.report_fd = -1

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def stop(self) -> None:
        """Graceful stop: the worker stops accepting, sends GOAWAY and drains."""
        if self.stop_sent is None:
            self.stop_sent = time.monotonic()
            self.signal(signal.SIGTERM)


class SupervisorHooks:
    """Extension points for metrics (h2gate/observe/metrics.py); the defaults do nothing.

    Replace :data:`h2gate.ops.supervisor.hooks` (or pass ``hooks=`` to :class:`Supervisor`) to set
    ``PROMETHEUS_MULTIPROC_DIR`` for workers, mark dead workers' files, or
    count restarts.
    """

    def worker_env(self, env: dict[str, str], slot: int, generation: int) -> None:
        """Adjust a worker's environment just before it starts (called in the supervisor)."""

    def worker_started(self, pid: int, slot: int) -> None:
        """A worker process was started in ``slot``."""

    def worker_exited(self, pid: int, code: int, restarting: bool) -> None:
        """A worker ended with ``code`` (negative: killed by that signal); ``restarting`` if it crashed."""

    def workers_changed(self, count: int) -> None:
        """The number of worker slots is now ``count`` (start, SIGTTIN, SIGTTOU, a reload that changed it)."""

    def reloaded(self, ok: bool) -> None:
        """A reload (SIGHUP, --reload) finished: the new workers serve (``ok``), or the old ones still do."""


def spawn_worker(
    slot: int, generation: int, cli_values: Mapping[str, Any], fds: list[int], env: dict[str, str]
) -> WorkerProcess:
    """Start ``python -m h2gate`` as a worker on the inherited sockets ``fds``. Raises OSError."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    spec = {"cli": dict(cli_values), "fds": fds, "report": write_fd, "parent": os.getpid(), "slot": slot}
    env = {**env, WORKER_ENV: json.dumps(spec)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "h2gate"], env=env, pass_fds=(*fds, write_fd))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return WorkerProcess(proc, slot, generation, read_fd)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


# --- inside the worker --------------------------------------------------------


class Reporter:
    """The worker's end of the report pipe, and its --max-requests count."""

    def __init__(self, fd: int, max_requests: int, jitter: int) -> None:
        self.fd = fd
        self.limit = max_requests + random.randint(0, jitter) if max_requests else 0
        self.served = 0
        self._retired = False

    def send(self, **message: Any) -> None:
        try:
            os.write(self.fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # the supervisor is gone; its death signal stops us

    def count_request(self) -> None:
        self.served += 1
        if self.limit and not self._retired and self.served >= self.limit:
            self._retired = True
            log.info("worker %d served %d requests (--max-requests): asks to be replaced", os.getpid(), self.served)
            self.send(event="retire", requests=self.served)


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM (a graceful stop) if the supervisor dies without stopping us."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(spec_text: str, serve: Callable[..., int]) -> int:
    """Run one worker from its ``WORKER_ENV`` spec; ``serve`` is :func:`h2gate.ops.run.serve_sockets`."""
    from h2gate.config import load_config
    from h2gate.errors import StartupError
    from h2gate.net.binds import Bind, open_socket
    from h2gate.observe.logs import setup_logging
    from h2gate.ops import signals

    spec = json.loads(spec_text)
    _die_with_parent(int(spec["parent"]))
    fds = [int(fd) for fd in spec["fds"]]
    for fd in [*fds, int(spec["report"])]:
        os.set_inheritable(fd, False)  # the app's own child processes must not hold our sockets
    try:
        config = load_config(spec["cli"])
        setup_logging(config.log_level, config.access_log, config)
        reporter = Reporter(int(spec["report"]), config.max_requests, config.max_requests_jitter)

        def ready(interface: str, how: str) -> None:
            log.info("worker %d ready (%s)", os.getpid(), how)
            reporter.send(event="ready", interface=interface, how=how)

        def open_listeners() -> list[socket.socket]:
            return [open_socket(Bind("fd", fd=fd), config.backlog) for fd in fds]

        hooks = signals.Hooks(worker=True, on_stop_signal=lambda name: reporter.send(event="stopping", signal=name))
        return serve(config, open_listeners, on_ready=ready, request_hook=reporter.count_request, signal_hooks=hooks)
    except StartupError as exc:
        # The supervisor prints it once for all workers (they usually fail alike); if it cannot be told, we say it.
        if not _report_failure(int(spec["report"]), str(exc)):
            print(f"h2gate: error: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        return 1


def _report_failure(fd: int, error: str) -> bool:
    try:
        os.write(fd, json.dumps({"event": "failed", "error": error}).encode() + b"\n")
    except OSError:
        return False
    return True
