"""What each signal means to h2gate's processes: the one table, and the watcher of a serving process.

Theory of operation
-------------------
Three kinds of process get signals: the *supervisor* (``-w N``, ``--supervise``),
its *workers*, and a *single* process (``-w 1``, the default). :data:`TABLE`
says what every signal whose default action would stop or kill a process
means to each of them; docs/operations.md shows the same table, and
tests/ops/test_signals.py checks that the two agree and that each handled signal
does what its row says, on real processes.

The supervisor reads signals from its wake-up socket (h2gate/ops/supervisor.py).
A worker or a single process runs :func:`watch` in its trio run: it maps each
signal to an action on the :class:`~h2gate.ops.server.Server` (graceful stop,
quick stop, certificate reload, log reopening) through the small
:class:`Controls` interface, so the watcher never reaches into the server.
A worker tells the supervisor when a stop signal reached it from outside
(``on_stop_signal``): the supervisor then starts its replacement at once
instead of treating its exit as a crash.

Signals left at their default action are listed in :data:`LEFT_ALONE`, with why.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from h2gate.observe.logs import reopen_log_files

log = logging.getLogger("h2gate.error")

#: Seconds a quick stop (second SIGINT, SIGQUIT) waits for cancelled work before the process exits regardless.
FORCED_EXIT_DELAY = 2.0


@dataclass(frozen=True)
class Meaning:
    """One row of the signal table: what the signal does to each kind of process."""

    name: str
    supervisor: str
    worker: str
    single: str


TABLE: tuple[Meaning, ...] = (
    Meaning(
        "SIGTERM",
        "graceful stop: SIGTERM to every worker, SIGKILL to those still running --graceful-timeout + 5 s later",
        "graceful stop (stop accepting, GOAWAY, drain); sent by an operator, the supervisor starts a "
        "replacement at once",
        "graceful stop",
    ),
    Meaning(
        "SIGINT",
        "as SIGTERM; a second SIGINT makes the workers exit at once",
        "as SIGTERM; a second SIGINT exits at once",
        "as SIGTERM; a second SIGINT exits at once (status 130)",
    ),
    Meaning(
        "SIGQUIT",
        "quick stop: SIGQUIT to every worker, exit once they are gone",
        "quick stop: in-flight requests are cancelled, exit within 2 s",
        "quick stop: in-flight requests are cancelled, exit within 2 s",
    ),
    Meaning(
        "SIGHUP",
        "zero-downtime reload: new workers (config, app and certificates re-read), then the old ones drain",
        "re-read this worker's certificates (send SIGHUP to the supervisor instead)",
        "re-read the certificates in place (systemd is told RELOADING=1, then READY=1)",
    ),
    Meaning(
        "SIGUSR1",
        "reopen log files (after logrotate), and pass SIGUSR1 on to every worker",
        "reopen log files",
        "reopen log files",
    ),
    Meaning(
        "SIGUSR2",
        "ignored, with a log line (no binary upgrade: SIGHUP reloads)",
        "ignored, with a log line",
        "ignored, with a log line",
    ),
    Meaning(
        "SIGTTIN",
        "one more worker",
        "ignored, with a log line (send it to the supervisor)",
        "ignored, with a log line (no supervisor: run with --supervise or -w N)",
    ),
    Meaning(
        "SIGTTOU",
        "one worker fewer (never below 1): the one in the highest slot drains and exits",
        "ignored, with a log line (send it to the supervisor)",
        "ignored, with a log line (no supervisor: run with --supervise or -w N)",
    ),
    Meaning(
        "SIGCHLD",
        "a worker exited: it is reaped at once (default action: ignored)",
        "default (ignored)",
        "default (ignored)",
    ),
)

#: Signals whose default action stops or kills the process and that h2gate leaves at that default.
LEFT_ALONE: dict[str, str] = {
    "SIGKILL": "cannot be caught; a worker killed so is restarted as after a crash (with back-off)",
    "SIGSTOP": "cannot be caught; the process is frozen until SIGCONT",
    "SIGTSTP": "terminal stop (Ctrl-Z): left to the shell's job control",
    "SIGPIPE": "ignored by Python itself: a write to a closed socket is an error on that connection only",
    "SIGXFSZ": "ignored by Python itself: a write past the file size limit is an error",
    "SIGALRM": "left to the application (signal.alarm); kills the process if nothing handles it",
    "SIGVTALRM": "left to the application (profilers, timers); kills the process if nothing handles it",
    "SIGPROF": "left to the application (profilers); kills the process if nothing handles it",
    "SIGIO": "not used by h2gate (SIGPOLL); kills the process if something sends it",
    "SIGPWR": "not used by h2gate; kills the process if something sends it",
    "SIGSYS": "a bad system call: a bug, kills the process (core dump)",
    "SIGXCPU": "the CPU time limit (RLIMIT_CPU) was reached: kills the process (core dump)",
    "SIGTRAP": "a debugger's: kills the process (core dump)",
    "SIGABRT": "abort(): the process is beyond repair (core dump)",
    "SIGBUS": "a memory fault: the process is beyond repair (core dump)",
    "SIGFPE": "an arithmetic fault: the process is beyond repair (core dump)",
    "SIGILL": "an illegal instruction: the process is beyond repair (core dump)",
    "SIGSEGV": "a memory fault: the process is beyond repair (core dump); Python's faulthandler can print where",
}

#: What :func:`watch` listens for in a worker or a single process.
WATCHED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


class Controls(Protocol):
    """What the watcher may do to the server it serves."""

    def request_shutdown(self) -> None: ...

    def shutdown_requested(self) -> bool: ...

    def reload_certificates(self) -> None: ...

    def set_exit_code(self, code: int) -> None: ...


@dataclass
class Hooks:
    """The process model's part: a worker reports stops, a single process notifies systemd."""

    worker: bool = False
    on_stop_signal: Callable[[str], object] | None = None  # the signal's name, when it starts a stop
    on_reloading: Callable[[], object] | None = None
    on_reloaded: Callable[[], object] | None = None


async def watch(controls: Controls, root_scope: trio.CancelScope, hooks: Hooks) -> None:
    """Act on signals until a quick stop cancels ``root_scope`` (or the run ends)."""
    with trio.open_signal_receiver(*WATCHED) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if hooks.on_reloading is not None:
                    hooks.on_reloading()
                controls.reload_certificates()
                if hooks.on_reloaded is not None:
                    hooks.on_reloaded()
            elif signum == signal.SIGUSR1:
                count = reopen_log_files()
                log.info("received SIGUSR1: reopened %d log file(s)", count)
            elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                where = "the supervisor" if hooks.worker else "a supervisor (--supervise or -w N)"
                log.warning("received %s: ignored; the number of workers is changed by sending it to %s", name, where)
            elif signum == signal.SIGUSR2:
                log.warning("received SIGUSR2: ignored (h2gate has no binary upgrade; SIGHUP reloads)")
            elif signum == signal.SIGQUIT:
                log.warning("received SIGQUIT: quick stop, in-flight requests are cancelled")
                _stop_now(controls, root_scope, hooks, name, 0)
                return
            elif not controls.shutdown_requested():
                log.info("received %s: stopping gracefully", name)
                if hooks.on_stop_signal is not None:
                    hooks.on_stop_signal(name)
                controls.request_shutdown()
            elif signum == signal.SIGINT:
                log.warning("second SIGINT: exiting now")
                _stop_now(controls, root_scope, hooks, name, 130)
                return


def _stop_now(controls: Controls, root_scope: trio.CancelScope, hooks: Hooks, name: str, code: int) -> None:
    if hooks.on_stop_signal is not None and not controls.shutdown_requested():
        hooks.on_stop_signal(name)
    controls.set_exit_code(code)
    root_scope.cancel()
    # App threads (WSGI, or the asyncio loop) cannot be cancelled: if one holds the process, leave without it.
    timer = threading.Timer(FORCED_EXIT_DELAY, os._exit, (code,))
    timer.daemon = True
    timer.start()
