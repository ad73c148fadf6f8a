"""The WSGI worker pool: app calls in plain threads, trio told through one wake-up per batch.

Theory of operation. ``trio.to_thread.run_sync`` plus ``trio.from_thread.run``
cost several thread switches and a few hundred microseconds of CPU per request;
for small requests that was most of a WSGI request's cost. Here:

* Worker threads block on one FIFO queue of jobs. A thread is started only when
  a job arrives and no started thread is spare, up to ``--threads``; jobs beyond
  that wait in the queue, in arrival order.
* The stream's trio task parks (``wait_task_rescheduled``) while its job runs.
  Threads never run trio code: they post the job to :class:`_Wakes`, which
  reschedules parked tasks from one ``run_sync_soon`` callback per batch.
* When the app reads ``wsgi.input`` or writes body bytes, its thread puts a
  request on the job and blocks on a lock; the stream task wakes, awaits the
  request's coroutine function *in its own task* and hands the outcome back.
  So a cancelled stream cancels that I/O too, and the thread sees
  :class:`ClientDisconnected` (an OSError), never a hang.
* Body chunks may be handed over *behind* (:meth:`Job.call_behind`): the
  thread goes on with the app while the stream task queues them, in order,
  and waits only once more than ``BEHIND_BYTES`` are not yet taken; a failure
  is raised at the thread's next call. With one stream the two threads no
  longer take turns per chunk.
* A thread cannot be interrupted. A stream task cancelled while its job runs
  abandons the job: a pending or later request of that thread is answered with
  ClientDisconnected at once, the job's result is dropped, and the thread keeps
  its slot until the app really returns. A job abandoned while still queued is
  skipped.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from h2gate.errors import ClientDisconnected

CANCELLED = "the stream was cancelled (connection lost or server shutting down)"
STOPPED = "the server has stopped"
#: Body bytes a thread may have handed over behind (see Job.call_behind) before it waits.
BEHIND_BYTES = 256 * 1024


class _Here(threading.local):
    job: Job | None = None  # the job this worker thread is running


_here = _Here()


def current_job() -> Job | None:
    """The job of the calling pool thread, or None outside the pool (see :func:`h2gate.wsgi.bridge.to_trio`)."""
    return _here.job


class _Request:
    """One call from an app thread into its stream's trio task, and its answer."""

    __slots__ = ("afn", "answer", "args", "behind", "waiter")

    def __init__(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], behind: bool = False) -> None:
        self.afn, self.args, self.behind = afn, args, behind
        self.answer: outcome.Outcome[Any] | None = None
        self.waiter = threading.Lock()
        self.waiter.acquire()  # released once ``answer`` is set

    def reply(self, answer: outcome.Outcome[Any]) -> None:
        self.answer = answer
        self.waiter.release()


class _Wakes:
    """Job wake-ups from worker threads to one trio run, coalesced: one ``run_sync_soon`` per batch.

    ``post`` appends and schedules a drain only when none is pending; the drain
    clears the flag *before* it empties the queue, so a job appended meanwhile
    either rides on this drain or schedules the next one: none is stranded.
    """

    __slots__ = ("_jobs", "_pending", "_soon")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._jobs: deque[Job] = deque()
        self._pending = False
        self._soon = token.run_sync_soon

    def post(self, job: Job) -> None:
        """From a worker thread; raises trio.RunFinishedError when the trio run is over."""
        self._jobs.append(job)
        if not self._pending:
            self._pending = True
            try:
                self._soon(self._drain)
            except trio.RunFinishedError:
                self._pending = False
                self._jobs.clear()
                raise

    def _drain(self) -> None:
        self._pending = False
        jobs = self._jobs
        while jobs:
            jobs.popleft().wake()


class Job:
    """One app call: written by its worker thread, awaited by its stream's trio task (:meth:`wait`)."""

    __slots__ = (
        "abandoned", "args", "behind", "behind_bytes", "fn", "lock", "parked", "requests", "result", "started",
        "task", "wakes",
    )  # fmt: skip

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], wakes: _Wakes) -> None:
        self.fn, self.args, self.wakes = fn, args, wakes
        self.task = trio.lowlevel.current_task()
        self.lock = threading.Lock()  # orders ``abandoned`` against ``requests`` and ``result``
        self.abandoned = False
        self.started = False  # a worker thread took it (and so runs it to the end)
        self.parked = False  # trio side only: the task waits in wait_task_rescheduled
        self.requests: deque[_Request] = deque()  # posted by the thread, served in order by the task
        self.result: outcome.Outcome[Any] | None = None
        self.behind: deque[tuple[_Request, int]] = deque()  # thread side: handed over, answer not yet read
        self.behind_bytes = 0

    # -- worker thread side ------------------------------------------------------------

    def take(self) -> bool:
        """A worker is about to run the job: False if its stream has already given up on it."""
        with self.lock:
            self.started = not self.abandoned
            return self.started

    def call(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        """Run ``afn(*args)`` in the stream's task and return its result; raises ClientDisconnected if gone.

        A failure of an earlier :meth:`call_behind` is raised instead, first.
        """
        request = self._post(afn, args)
        request.waiter.acquire()
        self._settle(0)  # all answered by now: they were served first
        assert request.answer is not None
        return request.answer.unwrap()

    def call_behind(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], size: int) -> None:
        """Hand ``afn(*args)`` (``size`` body bytes) to the stream's task without waiting for it.

        Waits only while more than BEHIND_BYTES handed over this way are still
        untaken. Raises the first failure among them (the call that failed is
        not repeated), or ClientDisconnected if the stream is gone.
        """
        self._settle(BEHIND_BYTES)
        request = self._post(afn, args, behind=True)
        self.behind.append((request, size))
        self.behind_bytes += size

    def _post(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], behind: bool = False) -> _Request:
        request = _Request(afn, args, behind)
        with self.lock:
            if self.abandoned:
                raise ClientDisconnected(CANCELLED)
            self.requests.append(request)
        try:
            self.wakes.post(self)
        except trio.RunFinishedError:
            with self.lock:
                if request in self.requests:
                    self.requests.remove(request)
            raise ClientDisconnected(STOPPED) from None
        return request

    def _settle(self, limit: int) -> None:
        """Read the answers to calls handed over behind, waiting until at most ``limit`` bytes are untaken."""
        behind = self.behind
        while behind:
            request, size = behind[0]
            if request.answer is None:
                if self.behind_bytes <= limit:
                    return
                request.waiter.acquire()
            behind.popleft()
            self.behind_bytes -= size
            assert request.answer is not None
            if isinstance(request.answer, outcome.Error):
                for rest, _ in behind:  # not run (the task answers them with the same error)
                    rest.waiter.acquire()
                behind.clear()
                self.behind_bytes = 0
                request.answer.unwrap()

    def finish(self, result: outcome.Outcome[Any]) -> None:
        """The app call is over: hand its outcome to the stream task, or drop it if that has gone."""
        with self.lock:
            if self.abandoned:
                return
            self.result = result
        try:
            self.wakes.post(self)
        except trio.RunFinishedError:
            pass  # nobody is left to tell

    # -- trio side -----------------------------------------------------------------------

    def wake(self) -> None:
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task)

    def _abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self.parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait(self) -> Any:
        """Serve the thread's requests until the app call ends; its result or exception is passed on."""
        try:
            requests = self.requests
            failed: outcome.Error | None = None  # of a call behind: later ones must not leave a gap
            while True:
                if requests:
                    request = requests[0]
                    answer: outcome.Outcome[Any]
                    if request.behind and failed is not None:
                        answer = failed
                    else:
                        try:
                            answer = outcome.Value(await request.afn(*request.args))
                        except Exception as exc:
                            answer = outcome.Error(exc)
                            if request.behind:
                                failed = answer
                    if requests and requests[0] is request:
                        requests.popleft()
                    request.reply(answer)
                elif self.result is not None:
                    return self.result.unwrap()
                else:
                    self.parked = True
                    await trio.lowlevel.wait_task_rescheduled(self._abort)
        except BaseException:
            if self.result is None:
                self.abandon()
            raise

    def abandon(self) -> None:
        """The stream task stops waiting: answer the thread's pending requests, refuse later ones."""
        with self.lock:
            self.abandoned = True
            pending = list(self.requests)
            self.requests.clear()
        for request in pending:
            request.reply(outcome.Error(ClientDisconnected(CANCELLED)))


class WorkerPool:
    """At most ``threads`` app calls at once, in daemon threads started on demand; the rest wait in FIFO order."""

    def __init__(self, threads: int, name: str = "h2gate-wsgi") -> None:
        self.limit = threads
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # started and not yet stopped
        self._spare = 0  # idle threads minus queued jobs; negative: jobs waiting for a thread
        self._started = 0  # for thread names
        self._closed = False
        self._wakes: _Wakes | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    @property
    def threads(self) -> int:
        """Worker threads alive (idle or busy)."""
        return self._threads

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread: :meth:`submit`, then :meth:`Job.wait`."""
        return await self.submit(fn, *args).wait()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Queue ``fn(*args)`` for a worker thread, to run in a fresh contextvars context.

        Called from the trio task that will :meth:`Job.wait` for it; cancelling
        that wait abandons the call (see the module docstring). Raises
        RuntimeError once the pool is closed.
        """
        token = trio.lowlevel.current_trio_token()
        if self._wakes is None or self._token is not token:
            self._token, self._wakes = token, _Wakes(token)
        job = Job(fn, args, self._wakes)
        with self._lock:
            if self._closed:
                raise RuntimeError("the WSGI worker pool is closed")
            if self._spare <= 0 and self._threads < self.limit:
                self._start_thread()  # RuntimeError if the OS refuses: this request fails, nothing is counted
            self._spare -= 1
        self._jobs.put(job)
        return job

    def _start_thread(self) -> None:
        """With ``_lock`` held: one more worker, idle until it takes a job."""
        self._started += 1
        thread = threading.Thread(target=self._work, name=f"{self.name}-{self._started}", daemon=True)
        thread.start()
        self._threads += 1
        self._spare += 1

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:
                with lock:
                    self._threads -= 1
                return
            if not job.take():  # its stream gave up while it was queued
                with lock:
                    self._spare += 1
                continue
            _here.job = job
            result = outcome.capture(contextvars.Context().run, job.fn, *job.args)
            _here.job = None
            with lock:  # spare before the stream task hears of it: its next job must not start a thread
                self._spare += 1
            job.finish(result)
            del job, result  # nothing of a finished request stays alive in an idle thread

    def close(self) -> None:
        """Stop the workers: idle ones at once, busy ones when their app call returns. Does not wait."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)
