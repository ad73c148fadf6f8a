"""What operators ask of the supervisor by signal (stop, quick stop, SIGUSR1, SIGTTIN, SIGTTOU, a worker's own stop).

A part of :class:`h2gate.ops.supervisor.Supervisor`, kept apart so each file
holds one concern: this one the operator's requests and the stop deadlines,
supervisor.py the loop, starts, reloads and exits. The signal table is in
h2gate/ops/signals.py.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from typing import TYPE_CHECKING

from h2gate.observe.logs import reopen_log_files
from h2gate.ops import systemd
from h2gate.ops.signals import FORCED_EXIT_DELAY

if TYPE_CHECKING:
    from h2gate.config import Config
    from h2gate.ops.listeners import SlotSockets
    from h2gate.ops.workers import SupervisorHooks, WorkerProcess

log = logging.getLogger("h2gate.error")

#: The --workers maximum; SIGTTIN stops there.
MAX_WORKERS = 512
#: Seconds past --graceful-timeout before a worker that has not stopped gets SIGKILL.
STOP_MARGIN = 5.0


class OperatorActions:
    """Mixed into the Supervisor: the state it uses is the Supervisor's."""

    config: Config
    workers: list[WorkerProcess]
    target: int
    generation: int
    new_generation: int | None
    stop_deadline: float | None
    exit_code: int
    pending: list[tuple[float, int, int, WorkerProcess | None]]
    hooks: SupervisorHooks
    slots: SlotSockets

    if TYPE_CHECKING:  # the Supervisor's own

        def _spawn(self, slot: int, generation: int, replaces: WorkerProcess | None = None) -> WorkerProcess | None: ...

    def _on_worker_stopping(self, worker: WorkerProcess, name: str) -> None:
        """A stop signal reached a worker; if the supervisor did not send it, replace the worker now."""
        if worker.stop_sent is not None or self.stop_deadline is not None or worker.operator_stop is not None:
            return
        worker.operator_stop = name
        if worker.slot >= self.target or worker.generation < self.generation:
            log.info("worker %d received %s from outside the supervisor: not replaced (slot retired)", worker.pid, name)
            return
        if any(w.replaces is worker for w in self.workers):
            return  # its replacement is already starting (--max-requests)
        replacement = self._spawn(worker.slot, worker.generation)
        if replacement is not None:
            log.info(
                "worker %d received %s from outside the supervisor (an operator): it drains, worker %d replaces it",
                worker.pid,
                name,
                replacement.pid,
            )

    # --- SIGUSR1, SIGTTIN, SIGTTOU ----------------------------------------------------------

    def _on_sigusr1(self) -> None:
        count = reopen_log_files()
        log.info("received SIGUSR1: reopened %d log file(s); passing it on to %d worker(s)", count, len(self.workers))
        for worker in self.workers:
            worker.signal(signal.SIGUSR1)

    def _resize(self, change: int) -> None:
        if self.stop_deadline is not None:
            return
        name = "SIGTTIN" if change > 0 else "SIGTTOU"
        target = min(max(self.target + change, 1), MAX_WORKERS)
        if target == self.target:
            bound = "minimum" if change < 0 else "maximum"
            log.warning("received %s: staying at %d worker(s) (the %s)", name, target, bound)
            return
        self.target = target
        self.hooks.workers_changed(target)
        if change > 0:
            slot = target - 1
            log.info("received SIGTTIN: %d worker(s) now, starting one in slot %d", target, slot)
            for generation in {self.generation, self.new_generation} - {None}:
                self._spawn(slot, generation)  # type: ignore[arg-type]
            return
        retired = [w for w in self.workers if w.slot >= target and w.stop_sent is None]
        self.pending = [p for p in self.pending if p[1] < target]
        log.info(
            "received SIGTTOU: %d worker(s) now; stopping %s gracefully",
            target,
            ", ".join(str(w.pid) for w in retired) or "none (its slot was empty)",
        )
        for worker in retired:
            worker.stop()
        for slot in range(target, target + 1 - change):
            self.slots.release(slot)  # the worker's own copy closes as it stops accepting

    # --- stopping -------------------------------------------------------------------

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop_deadline is None:
            log.info("received %s: stopping %d worker(s) gracefully", name, len(self.workers))
            self._shutdown()
        elif signum == signal.SIGINT:
            log.warning("second SIGINT: workers exit now")
            self.exit_code = 130
            for worker in self.workers:
                worker.signal(signal.SIGINT)
            self.stop_deadline = min(self.stop_deadline, time.monotonic() + FORCED_EXIT_DELAY + 1)

    def _quick_stop(self, name: str, signum: int, code: int) -> None:
        log.warning("received %s: quick stop, workers exit at once", name)
        if self.stop_deadline is None:
            systemd.stopping()
            self.pending.clear()
            self.exit_code = code
        for worker in self.workers:
            worker.stop_sent = worker.stop_sent or time.monotonic()
            worker.signal(signum)
        self.stop_deadline = min(self.stop_deadline or math.inf, time.monotonic() + FORCED_EXIT_DELAY + 1)

    def _fatal(self) -> None:
        self.exit_code = 1
        self._shutdown()

    def _shutdown(self) -> None:
        if self.stop_deadline is not None:
            return
        systemd.stopping()
        self.stop_deadline = time.monotonic() + self.config.graceful_timeout + STOP_MARGIN
        self.pending.clear()
        for worker in self.workers:
            worker.stop()

    def _enforce_deadlines(self, now: float) -> None:
        limit = self.config.graceful_timeout + STOP_MARGIN
        for worker in self.workers:
            late = self.stop_deadline is not None and now >= self.stop_deadline
            if worker.stop_sent is not None and now >= worker.stop_sent + limit:
                late = True
            if late and not worker.killed:
                worker.killed = True
                log.warning("worker %d did not stop in time: killing it (SIGKILL)", worker.pid)
                worker.signal(signal.SIGKILL)
