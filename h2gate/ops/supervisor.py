"""The supervisor: N worker processes on shared sockets, restarts, zero-downtime reloads.

Theory of operation
-------------------
The supervisor opens the listening sockets once and starts workers
(:mod:`h2gate.ops.workers`) that inherit them; the kernel spreads new
connections over the workers that accept. It never imports the app or trio:
it is one plain loop over a selector that watches the workers' report pipes
and a wake-up socket fed by signal handlers (``signal.set_wakeup_fd``: each
byte is a signal number; byte 0 means the file watcher saw a change).

Every change of workers starts the new process first and stops the old one
only once the new one reported ready, so some worker always accepts:

* SIGHUP (or, with --reload, a file change): a new *generation* of workers
  (app re-imported, config file and certificates re-read by each worker).
  When all of it is ready the old generation gets SIGTERM (stop accepting,
  GOAWAY, drain). If a new worker exits before it is ready, the new
  generation is stopped and the old one keeps serving.
* --max-requests: a worker reports ``retire``; a replacement starts in its
  slot and the old one is stopped once the replacement is ready.
* A worker that dies unexpectedly is restarted after a back-off that doubles
  per crash up to ``BACKOFF_MAX`` (reset once workers stay up a while).

A worker that fails before it was ever ready is a configuration or app
error, not bad luck: during the first start the supervisor stops with exit
status 1; later it retries with back-off at most ``MAX_BOOT_FAILURES`` times
in a row. With --reload it just waits for the next change instead.

SIGTERM/SIGINT: SIGTERM to every worker, wait up to ``--graceful-timeout``
plus ``STOP_MARGIN``, then SIGKILL stragglers (logged). A second SIGINT (or
SIGQUIT) is passed on, which makes the workers exit at once.

The other signals (the table is in h2gate/ops/signals.py): SIGUSR1 reopens
the log files here and is passed on to every worker; SIGTTIN and SIGTTOU add
and remove a worker (``target``, the number of slots; a reload keeps it
unless the re-read config changed --workers). A worker that reports a stop
signal the supervisor did not send was stopped by an operator: its
replacement starts at once, and its exit is logged as such, not as a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Mapping
from typing import Any

from h2gate.config import Config, load_config
from h2gate.errors import ConfigError
from h2gate.net.binds import Bind
from h2gate.ops import systemd
from h2gate.ops.banner import print_startup_block
from h2gate.ops.listeners import SlotSockets
from h2gate.ops.operator import OperatorActions
from h2gate.ops.workers import SupervisorHooks, WorkerProcess, describe_exit, spawn_worker

log = logging.getLogger("h2gate.error")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0  # a worker up this long resets the crash back-off
MAX_BOOT_FAILURES = 5
TICK = 0.5  # longest sleep of the loop; children are also reaped on SIGCHLD


#: The hooks every Supervisor uses unless given others (see :class:`~h2gate.ops.workers.SupervisorHooks`).
hooks = SupervisorHooks()


def _noop(signum: int, frame: Any) -> None:
    """Signals are read from the wake-up socket; the Python handler only has to exist."""


class Supervisor(OperatorActions):
    def __init__(
        self,
        config: Config,
        cli_values: Mapping[str, Any],
        sockets: list[socket.socket] | SlotSockets,
        *,
        hooks: SupervisorHooks | None = None,
    ) -> None:
        """``sockets``: shared by every worker, or a :class:`SlotSockets` (one SO_REUSEPORT socket per slot)."""
        self.config = config
        self.cli_values = dict(cli_values)
        if not isinstance(sockets, SlotSockets):
            sockets = SlotSockets([(Bind("fd", fd=s.fileno()), s) for s in sockets], config.backlog, reserved=False)
        self.slots = sockets
        self.sockets = sockets.sockets
        self.hooks = hooks or globals()["hooks"]
        self.workers: list[WorkerProcess] = []
        self.target = config.workers  # slots 0..target-1; SIGTTIN/SIGTTOU change it
        self.generation = 1  # the generation that serves
        self._next_generation = 2
        self.new_generation: int | None = None  # a reload under way
        self.reload_queued = False
        self.announced = False
        self.stop_deadline: float | None = None  # set once shutting down
        self.exit_code = 0
        #: Why the first workers could not start, as one of them reported it; the CLI prints it once.
        self.failure: str | None = None
        self.crashes = 0
        self.boot_failures = 0
        #: Delayed starts: (when, slot, generation, the worker it replaces once ready).
        self.pending: list[tuple[float, int, int, WorkerProcess | None]] = []
        self.watcher: Any = None
        self._new_config = config
        self._self_signed_pem: str | None = None  # --self-signed: one certificate for every worker
        self._selector = selectors.DefaultSelector()

    # --- the loop -------------------------------------------------------------

    def run(self) -> int:
        """Run workers until shut down; returns the exit status."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signals = (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGCHLD,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGUSR2,
            signal.SIGTTIN,
            signal.SIGTTOU,
        )
        previous = {sig: signal.signal(sig, _noop) for sig in signals}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self._selector.register(wake_r, selectors.EVENT_READ)
        try:
            if self.config.reload:
                from h2gate.ops.reloader import FileWatcher

                self.watcher = FileWatcher.from_config(self.config)
                self.watcher.start(lambda: _wake(wake_w))
            log.info("supervisor %d starting %d worker(s)", os.getpid(), self.target)
            self.hooks.workers_changed(self.target)
            for slot in range(self.target):
                self._spawn(slot, self.generation)
            while self.workers or (self.pending and self.stop_deadline is None) or self._idle_reloader():
                self._reap()
                now = time.monotonic()
                self._start_due(now)
                self._enforce_deadlines(now)
                timeout = min([TICK] + [max(0.0, when - now) for when, *_ in self.pending])
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is wake_r:
                        self._on_wake(wake_r)
                    else:
                        self._read(key.data)
            log.info("supervisor %d stopped", os.getpid())
            return self.exit_code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.watcher is not None:
                self.watcher.stop()
            for worker in self.workers:  # only after an exception in the loop itself
                worker.signal(signal.SIGKILL)
                worker.close_pipe()
            self.slots.close()
            self._selector.close()
            wake_r.close()
            wake_w.close()

    def _idle_reloader(self) -> bool:
        """With --reload and no worker (the code does not import), keep waiting for a fix."""
        return self.watcher is not None and self.stop_deadline is None

    def _on_wake(self, wake_r: socket.socket) -> None:
        try:
            data = wake_r.recv(4096)
        except BlockingIOError:
            return
        for signum in data:
            if signum == 0:
                self._on_file_change()
            elif signum == signal.SIGHUP:
                self._on_sighup()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self._on_stop_signal(signum)
            elif signum == signal.SIGQUIT:
                self._quick_stop("SIGQUIT", signal.SIGQUIT, 0)
            elif signum == signal.SIGUSR1:
                self._on_sigusr1()
            elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                self._resize(+1 if signum == signal.SIGTTIN else -1)
            elif signum == signal.SIGUSR2:
                log.warning("received SIGUSR2: ignored (h2gate has no binary upgrade; SIGHUP reloads)")

    def _read(self, worker: WorkerProcess) -> None:
        fd = worker.report_fd
        for message in worker.read_reports():
            if message.get("event") == "ready":
                self._on_ready(worker, str(message.get("interface", "")), str(message.get("how", "")))
            elif message.get("event") == "failed":
                worker.error = str(message.get("error", ""))
            elif message.get("event") == "retire":
                self._on_retire(worker)
            elif message.get("event") == "stopping":
                self._on_worker_stopping(worker, str(message.get("signal", "a signal")))
        if worker.report_fd < 0:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)

    # --- starting ---------------------------------------------------------------

    def _spawn(self, slot: int, generation: int, replaces: WorkerProcess | None = None) -> WorkerProcess | None:
        env = systemd.child_environment(os.environ)
        if self._new_config.self_signed:
            from h2gate.tls.context import SELF_SIGNED_ENV, make_self_signed

            if self._self_signed_pem is None:
                self._self_signed_pem = make_self_signed()
            env[SELF_SIGNED_ENV] = self._self_signed_pem
        self.hooks.worker_env(env, slot, generation)
        try:
            worker = spawn_worker(slot, generation, self.cli_values, self.slots.fds(slot), env)
        except OSError as exc:
            log.error("cannot start a worker: %s", exc)
            self._fatal()
            return None
        worker.replaces = replaces
        self.hooks.worker_started(worker.pid, slot)
        self.workers.append(worker)
        self._selector.register(worker.report_fd, selectors.EVENT_READ, worker)
        return worker

    def _start_due(self, now: float) -> None:
        due = [p for p in self.pending if p[0] <= now]
        self.pending = [p for p in self.pending if p[0] > now]
        for _, slot, generation, replaces in due:
            if replaces is not None and (replaces.stop_sent is not None or replaces.proc.poll() is not None):
                replaces = None
            if self.stop_deadline is None and generation >= self.generation and slot < self.target:
                self._spawn(slot, generation, replaces)

    def _on_ready(self, worker: WorkerProcess, interface: str, how: str) -> None:
        worker.ready, worker.interface, worker.how = True, interface, how
        self.boot_failures = 0
        if worker.replaces is not None:
            old, worker.replaces = worker.replaces, None
            log.info("worker %d is ready: stopping worker %d gracefully", worker.pid, old.pid)
            old.stop()
        if worker.generation == self.new_generation and all(
            w.ready for w in self.workers if w.generation == worker.generation
        ):
            self._finish_reload(worker.generation)
        if not self.announced and worker.generation == self.generation and self._generation_ready():
            self.announced = True
            self._announce(worker)
            systemd.ready()

    def _generation_ready(self) -> bool:
        current = [w for w in self.workers if w.generation == self.generation and w.stop_sent is None]
        return bool(current) and all(w.ready for w in current)

    def _announce(self, worker: WorkerProcess) -> None:
        parts = [f"{self.target} worker(s) under supervisor pid {os.getpid()}", "SIGHUP: zero-downtime reload"]
        if self.slots.spread:
            parts.append("a SO_REUSEPORT socket per worker")
        if self.config.max_requests:
            parts.append(f"replaced after {self.config.max_requests}(+{self.config.max_requests_jitter}) requests")
        if self.watcher is not None:
            parts.append(f"reloading on changes in {', '.join(self.watcher.dirs)}")
        print_startup_block(self.config, self.sockets, worker.interface, worker.how, "; ".join(parts))

    # --- reloads and replacements ------------------------------------------------

    def _on_sighup(self) -> None:
        if self.stop_deadline is not None:
            return
        log.info("received SIGHUP: reloading (new workers first, then the old ones drain)")
        self._start_reload()

    def _on_file_change(self) -> None:
        changes = self.watcher.take() if self.watcher is not None else []
        if changes and self.stop_deadline is None:
            shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
            log.info("--reload: %s changed: restarting the worker", shown)
            self._start_reload()

    def _start_reload(self) -> None:
        if self.new_generation is not None:
            self.reload_queued = True
            log.info("a reload is already under way: another one follows it")
            return
        try:
            config = load_config(self.cli_values)
        except ConfigError as exc:
            log.error("reload failed: %s; the running workers keep serving", exc)
            self.hooks.reloaded(False)
            return
        if config.bind != self.config.bind:
            log.warning("reload: changed --bind addresses take effect only after a restart")
        config.bind = self.config.bind
        if config.workers != self.config.workers:  # else a count set by SIGTTIN/SIGTTOU stays
            self.target = config.workers
            self.hooks.workers_changed(self.target)
        self._new_config = config  # adopted only if the new generation starts
        systemd.reloading()
        self.new_generation = generation = self._next_generation
        self._next_generation += 1
        for slot in range(self.target):
            self._spawn(slot, generation)

    def _finish_reload(self, generation: int) -> None:
        old = [w for w in self.workers if w.generation < generation]
        new = [w for w in self.workers if w.generation == generation]
        self.generation, self.new_generation = generation, None
        self.config = self._new_config
        log.info(
            "reload complete: workers %s are serving; stopping %s gracefully",
            ", ".join(str(w.pid) for w in new),
            ", ".join(str(w.pid) for w in old) or "none",
        )
        for worker in old:
            worker.stop()
        systemd.ready()
        self.hooks.reloaded(True)
        self._reload_followup()

    def _reload_failed(self, generation: int, why: str) -> None:
        self.new_generation = None
        hint = " (waiting for the next change)" if self.watcher is not None else ""
        log.error("reload failed: %s; the running workers keep serving%s", why, hint)
        for worker in self.workers:
            if worker.generation == generation:
                worker.stop()
        systemd.ready()
        self.hooks.reloaded(False)
        self._reload_followup()

    def _reload_followup(self) -> None:
        if self.reload_queued and self.stop_deadline is None:
            self.reload_queued = False
            self._start_reload()

    def _on_retire(self, worker: WorkerProcess) -> None:
        busy = any(w.replaces is worker for w in self.workers)
        if worker.retiring or busy or worker.stop_sent is not None or self.stop_deadline is not None:
            return
        worker.retiring = True
        if worker.generation != self.generation:
            return  # a reload replaces it anyway
        replacement = self._spawn(worker.slot, worker.generation, replaces=worker)
        if replacement is not None:
            log.info("starting worker %d to replace worker %d (--max-requests)", replacement.pid, worker.pid)

    # --- exits ------------------------------------------------------------------------

    def _reap(self) -> None:
        for worker in [w for w in self.workers if w.proc.poll() is not None]:
            self.workers.remove(worker)
            if worker.report_fd >= 0:
                self._read(worker)  # a last "ready" may still be in the pipe
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(worker.report_fd)
                worker.close_pipe()
            self._on_exit(worker, worker.proc.returncode)
            self._release_if_empty(worker.slot)

    def _release_if_empty(self, slot: int) -> None:
        """A slot with no worker left gives its sockets up, while another slot accepts (see h2gate/ops/listeners.py)."""
        if any(w.slot == slot for w in self.workers):
            return
        if slot < self.target and not any(w.ready and w.stop_sent is None for w in self.workers):
            return  # the only slot serving: its queue waits for the restart rather than being refused
        self.slots.release(slot)

    def _on_exit(self, worker: WorkerProcess, code: int) -> None:
        status = describe_exit(code)
        expected = worker.stop_sent is not None or self.stop_deadline is not None
        crashed = not expected and worker.ready and worker.operator_stop is None
        self.hooks.worker_exited(worker.pid, code, restarting=crashed)
        if expected:
            (log.debug if worker.error else log.info)("worker %d exited (%s)", worker.pid, status)
            return
        if worker.operator_stop is not None:
            outside = worker.operator_stop
            log.info("worker %d exited (%s) after %s from outside the supervisor", worker.pid, status, outside)
            return
        for other in self.workers:
            if other.replaces is worker:
                other.replaces = None  # its replacement is already starting
                log.warning("worker %d exited (%s) while its replacement was starting", worker.pid, status)
                return
        if not worker.ready:
            self._on_boot_failure(worker, status)
            return
        if time.monotonic() - worker.started > STABLE_AFTER:
            self.crashes = 0
        delay = min(BACKOFF_FIRST * 2**self.crashes, BACKOFF_MAX)
        self.crashes += 1
        log.warning("worker %d exited unexpectedly (%s): restarting it in %gs", worker.pid, status, delay)
        self.pending.append((time.monotonic() + delay, worker.slot, worker.generation, None))

    def _on_boot_failure(self, worker: WorkerProcess, status: str) -> None:
        what = f"worker {worker.pid} exited before it was ready ({status})"
        if worker.error:
            what = f"{what}: {worker.error}"
        if worker.generation == self.new_generation:
            self._reload_failed(worker.generation, what)
        elif self.watcher is not None:
            log.error("%s; --reload is waiting for the next change", what)
        elif not self.announced and worker.error:
            if self.failure is None:  # every worker of the first start usually fails alike: say it once
                self.failure = worker.error
                self._fatal()
        elif not self.announced:
            log.error("%s: the application could not start; stopping", what)
            self._fatal()
        else:
            self.boot_failures += 1
            if self.boot_failures >= MAX_BOOT_FAILURES:
                log.error("%s, %d times in a row: stopping", what, self.boot_failures)
                self._fatal()
                return
            delay = min(BACKOFF_FIRST * 2**self.boot_failures, BACKOFF_MAX)
            log.error("%s: trying again in %gs", what, delay)
            # A failed --max-requests replacement is tried again; the old worker serves meanwhile.
            self.pending.append((time.monotonic() + delay, worker.slot, worker.generation, worker.replaces))


def _wake(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.send(b"\0")
