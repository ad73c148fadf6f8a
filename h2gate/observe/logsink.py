"""Log lines written in batches: to a file by a thread, to stderr/stdout by a trio task between loop turns.

Theory of operation. Each destination (stderr, stdout, or one file path) has
one :class:`LineSink`, shared by every handler that writes there, so the
access log and the error log keep their relative order when they share a
stream. :meth:`LineSink.put` appends a finished line to a list under a lock.

A **file** is written by the sink's writer thread: it takes the whole list,
writes it with one call, then pauses :data:`LINGER` seconds so that the
lines of a burst gather; when it finds the list empty it parks on an event,
and only then does the next ``put`` wake it (a line after a quiet spell is
written at once). So under load no line costs a thread wake-up (an
``Event.set`` per batch showed up as 2% of the loop's time in a profile), an
idle server's writer sleeps, and the event loop performs no I/O for a line.

A **stream** (``-``: stderr or stdout) is shared with the app, whose own
``print`` writes its text and its newline separately: a thread writing there
slips its lines between the two (a test saw ``star: shutdown2026-...``). So a
stream is written by trio's thread, between two tasks' steps, by a flusher:
one trio *system task* per run and stream (:meth:`LineSink._flusher`). It
works as the file writer does: the ``put`` that finds the queue empty unparks
it (a :class:`trio.lowlevel.ParkingLot`: a list append, no system call); it
runs in the scheduler's next batch, after every task of this one, writes what
they all queued with one call, then pauses :data:`LINGER` seconds while the
next lines gather (a ``put`` then wakes nobody), and parks when a pause
brought nothing. So a line after a quiet spell goes out right after its turn,
and a busy server writes once per pause; :data:`MAX_STREAM_BATCH` lines
queued during a pause are written at once by the ``put`` that reaches it
(bounded memory). This replaced a ``run_sync_soon`` per turn with lines:
trio's wake-up socket written and read back, a task switch and a write, per
turn. The flusher's lifetime is the run's: trio cancels system tasks once the
main task has returned, and the flusher writes what is left as it goes. A
line put outside trio (startup, exit, another thread) is written at once, as
``logging`` always did. A full pipe can stall the loop there, as before;
``--access-logfile FILE`` takes the access lines off it.

Only the access lines (:func:`h2gate.observe.logs.access_log`, many) are
batched. A ``logging`` record (:class:`SinkHandler`: the error log, a few
lines) is written at once, after the lines queued before it, as ``logging``
always did: the lines that explain a crash are out before anything else
happens, and other processes can order by them (a worker's "ready" line is
out before its supervisor's "listening on"). Besides that, one case waits on
purpose:

* when :data:`MAX_PENDING` lines wait for a file (the disk is stuck), the
  next ``put`` waits until the writer has taken them: memory stays bounded
  and no line is dropped, as a server writing synchronously would behave.

Order: one lock (``_write_lock``) is held while a batch is taken *and*
written, by the writer thread and by :meth:`flush` alike, so batches reach
the destination in the order their lines were put.

Files follow logrotate (as :class:`logging.handlers.WatchedFileHandler` did):
before each batch the path is checked and reopened if the file was moved or
deleted. :meth:`LineSink.reopen` (SIGUSR1, ``h2gate.observe.logs.reopen``)
queues a marker: the lines put before it go to the old file, the ones after
to the reopened one. At exit (normal return, SIGTERM's graceful stop,
``sys.exit``) an ``atexit`` hook and ``logging.shutdown`` flush every sink; a
process killed by SIGKILL loses at most the last :data:`LINGER` seconds.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import TextIO

import trio

from h2gate.compiled import mypyc_attr

#: Seconds the file writer and the stream flusher pause after a write, for the next lines to gather.
LINGER = 0.05
#: Lines queued for a stream before ``put`` writes them at once rather than after the pause (bounded memory).
MAX_STREAM_BATCH = 1000
#: Lines waiting before ``put`` waits for the writer (bounded memory when the destination is stuck).
MAX_PENDING = 20_000


class _Reopen:
    """The place in the stream of lines where the file is to be reopened."""


_REOPEN = _Reopen()


class LineSink:
    """One destination's line queue and writer thread. ``stream`` for stderr/stdout, ``path`` for a file."""

    def __init__(self, *, stream: TextIO | None = None, path: str | None = None) -> None:
        if (stream is None) == (path is None):
            raise ValueError("a LineSink writes to a stream or a path")
        self.stream = stream
        self.path = path
        self._fd = -1
        self._ident: tuple[int, int] | None = None
        if path is not None:
            self._open()  # raises OSError now, at startup, rather than in the thread
        self._failed: str | None = None  # the last write error, reported once
        self._fresh_state()

    def _fresh_state(self) -> None:
        """Locks, queue and thread as new: at creation, and in a forked child (whose copies may be held)."""
        self._lock = threading.Lock()  # guards _pending
        # put's own handles on it: compiled, ``lock.acquire()`` looks the method up by name on every call.
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._write_lock = threading.Lock()  # held while a batch is taken and written: keeps the order
        self._wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self._pending: list[str | _Reopen] = []  # a child drops its parent's: the parent writes them
        self._parked = True  # the writer waits on _wake: the next put must set it
        self._writer: threading.Thread | None = None
        # A stream's flusher: the trio run it serves (its token) and where it parks. None: no flusher.
        self._flusher_token: trio.lowlevel.TrioToken | None = None
        self._flusher_lot = trio.lowlevel.ParkingLot()

    # -- the event loop's side ---------------------------------------------------------------------

    def put(self, line: str) -> None:
        """Queue ``line`` (no newline): written by the stream's flusher in trio, or by the file's writer thread."""
        if self.stream is not None:  # (the default; inlined: this runs once per request)
            self._acquire()  # (not ``with``: compiled, the context manager protocol cost 25 ns more)
            try:
                pending = self._pending
                pending.append(line)
                queued = len(pending)
            finally:
                self._release()
            if queued == 1:
                self._after_turn()
            elif queued >= MAX_STREAM_BATCH:
                self.flush()  # (from trio's thread, between two of the app's steps: never inside a print)
            # else the flush that the first line asked for takes this one too
            return
        with self._lock:
            pending = self._pending
            while len(pending) >= MAX_PENDING:
                self._wake.set()
                self._room.wait(1.0)
                pending = self._pending
            pending.append(line)
            wake, self._parked = self._parked, False
            thread = self._new_thread() if self._writer is None else None
        if thread is not None:
            thread.start()
        if wake:
            self._wake.set()

    def _after_turn(self) -> None:
        """Have the queued lines written after this turn of trio's scheduler: unpark (or start) the flusher."""
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:  # not in trio's thread: startup, exit, another thread
            self.flush()
            return
        if token is self._flusher_token:
            self._flusher_lot.unpark()  # (a no-op when it is already due to run)
            return
        try:
            trio.lowlevel.spawn_system_task(self._flusher, token, name=f"h2gate log flusher ({self._name()})")
        except RuntimeError:  # the run is ending: its system tasks are gone or going
            self.flush()
            return
        self._flusher_token = token

    async def _flusher(self, token: trio.lowlevel.TrioToken) -> None:
        """The stream's writer in one trio run: write what the last turns queued, then linger or park.

        Like the file writer: the first line after a quiet spell goes out after
        its turn; while lines keep coming, a :data:`LINGER` pause after each write
        lets them gather (no wake-up meanwhile: ``put`` unparks nobody), so a busy
        server writes once per pause, not once per turn. A trio system task: trio
        cancels it once the main task has returned, and it writes what is left as
        it ends. It must never raise (that would crash the run).
        """
        lot = self._flusher_lot
        try:
            while True:
                self._flush_quietly()
                await trio.sleep(LINGER)
                if not self._pending:
                    await lot.park()  # until a put finds the queue empty
        finally:
            if self._flusher_token is token:
                self._flusher_token = None
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        """:meth:`flush` for the flusher, which must not raise: a stream that fails oddly is reported, once."""
        try:
            self.flush()
        except Exception as exc:  # _write_lines handles OSError/ValueError; anything else is a broken stream
            self._report(f"log lines could not be written to {self._name()}: {exc!r}")

    def reopen(self) -> None:
        """Reopen the file after the lines queued so far (SIGUSR1 after logrotate); a no-op for streams."""
        if self.path is None:
            return
        with self._lock:
            self._pending.append(_REOPEN)
            self._parked = False
            thread = self._new_thread() if self._writer is None else None
        if thread is not None:
            thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Write every queued line now, in the calling thread (shutdown, a log record)."""
        with self._write_lock:
            self._write_batch(self._take())

    def write_now(self, line: str) -> None:
        """Write the queued lines and then ``line``, now, in the calling thread (one write)."""
        with self._write_lock:
            batch = self._take()
            batch.append(line)
            self._write_batch(batch)

    # -- the writer ---------------------------------------------------------------------------------

    def _new_thread(self) -> threading.Thread:
        """The writer thread, made (not started) under ``_lock`` so that only one is ever made."""
        name = f"h2gate-log-{os.path.basename(self.path) if self.path else 'stream'}"
        self._writer = threading.Thread(target=self._run, name=name, daemon=True)
        return self._writer

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # The first line after a quiet spell goes out at once; while lines keep coming, the
            # pause after each write lets the next ones gather into one batch.
            while self._write_queued():
                time.sleep(LINGER)

    def _write_queued(self) -> bool:
        """The writer thread's one batch; False when there was none and the writer parked (the next put() wakes it).

        (A function of its own, with no ``break`` inside the ``with``: mypyc compiles this module.)
        """
        with self._write_lock:
            batch = self._take(park=True)
            if batch:
                self._write_batch(batch)
        return bool(batch)

    def _take(self, park: bool = False) -> list[str | _Reopen]:
        """Everything queued; with ``park`` (the writer), an empty queue parks the writer on ``_wake``."""
        with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                self._room.notify_all()
            elif park:
                self._parked = True
                self._wake.clear()
        return batch

    def _write_batch(self, batch: list[str | _Reopen]) -> None:
        start = 0
        for i, item in enumerate(batch):
            if item is _REOPEN:
                self._write_lines(batch[start:i])  # type: ignore[arg-type]
                self._reopen_now()
                start = i + 1
        self._write_lines(batch[start:])  # type: ignore[arg-type]

    def _write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        try:
            if self.stream is not None:
                self.stream.write(text)
                self.stream.flush()
            else:
                self._check_rotated()
                data = memoryview(text.encode("utf-8", "backslashreplace"))
                while data:
                    # The count in a variable of its own: compiled by mypyc 2.4.1, a memoryview slice evaluates
                    # its start twice, so ``data[os.write(...):]`` wrote every batch twice
                    # (tests/release/test_compiled_source.py keeps calls out of slice bounds).
                    written = os.write(self._fd, data)
                    data = data[written:]
            self._failed = None
        except (OSError, ValueError) as exc:  # ValueError: a closed stream
            self._report(f"{len(lines)} log line(s) could not be written to {self._name()}: {exc}")

    def _report(self, message: str) -> None:
        """Say once per kind of failure, on the real stderr, that lines were lost."""
        if self._failed != message.split(":", 1)[-1]:
            self._failed = message.split(":", 1)[-1]
            try:
                print(f"h2gate: {message}", file=sys.__stderr__, flush=True)
            except (OSError, ValueError, AttributeError):
                pass

    def _name(self) -> str:
        return self.path or str(getattr(self.stream, "name", "stream"))

    # -- files -------------------------------------------------------------------------------------

    def _open(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        old, self._fd, self._ident = self._fd, fd, (st.st_dev, st.st_ino)
        if old >= 0:
            os.close(old)

    def _check_rotated(self) -> None:
        """Reopen when the path no longer names the file we hold (moved or deleted by logrotate)."""
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
            if (st.st_dev, st.st_ino) == self._ident:
                return
        except FileNotFoundError:
            pass
        self._open()

    def _reopen_now(self) -> None:
        try:
            self._open()
        except OSError as exc:
            self._report(f"could not reopen {self.path}: {exc}")

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class SinkHandler(logging.Handler):
    """A logging handler that formats a record once and hands the line to a :class:`LineSink`."""

    def __init__(self, sink: LineSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        """Written at once, after the lines queued before it: records are few, and other processes order by them.

        (A worker's "ready" line must be out before it tells its supervisor, whose
        "listening on" line follows; tests and operators read the log in that order.)
        The many access lines take :meth:`LineSink.put` instead.
        """
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.sink.write_now(line)

    def flush(self) -> None:
        self.sink.flush()


_sinks: dict[str, LineSink] = {}
_sinks_lock = threading.Lock()


def sink_for(target: str, stream: TextIO) -> LineSink:
    """The one sink of ``target`` ("-": ``stream``; else a file path). Raises OSError for a file it cannot open."""
    key = f"-{id(stream)}" if target == "-" else os.path.abspath(target)
    with _sinks_lock:
        sink = _sinks.get(key)
        if sink is None:
            sink = LineSink(stream=stream) if target == "-" else LineSink(path=key)
            _sinks[key] = sink
        return sink


def flush_all() -> None:
    """Write every queued line of every sink (the exit paths)."""
    for sink in list(_sinks.values()):
        sink.flush()


def reopen_all() -> int:
    """Reopen every log file after the lines queued so far (SIGUSR1); returns how many files."""
    files = [sink for sink in list(_sinks.values()) if sink.path is not None]
    for sink in files:
        sink.reopen()
    return len(files)


def _after_fork_in_child() -> None:
    for sink in list(_sinks.values()):
        sink._fresh_state()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
