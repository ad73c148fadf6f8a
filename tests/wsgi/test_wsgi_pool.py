"""The WSGI worker pool (h2gate/wsgi/pool.py): unit tests of its promises, then the same through a real server.

The unit tests drive a WorkerPool from trio with jobs that block on
threading.Events the test opens, so every ordering they check is forced,
not timed.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from h2gate.errors import ClientDisconnected
from h2gate.wsgi import pool as pool_module
from h2gate.wsgi.bridge import to_trio, to_trio_behind
from h2gate.wsgi.pool import WorkerPool
from tests.conftest import h2c_client
from tests.h2raw import RawH2

APP = ("apps.wsgi_pool:app", "--interface", "wsgi")
WAIT = 10.0  # upper bound of every wait in these tests, seconds


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` from trio (bounded): the threads under test change what it reads."""
    with trio.fail_after(WAIT):
        while not predicate():
            await trio.sleep(0.005)


def pool_threads(p: WorkerPool) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{p.name}-")]


class Gates:
    """Jobs that record when they start and block until the test opens their gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.running = 0
        self.peak = 0
        self.gates: dict[int, threading.Event] = {}

    def gate(self, n: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(n, threading.Event())

    def job(self, n: int) -> int:
        gate = self.gate(n)
        with self.lock:
            self.started.append(n)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert gate.wait(WAIT), f"job {n} was never released"
        finally:
            with self.lock:
                self.running -= 1
        return n * 10


@pytest.fixture
def pool() -> Any:
    pools: list[WorkerPool] = []

    def make(threads: int) -> WorkerPool:
        pools.append(WorkerPool(threads, name=f"test-pool-{uuid.uuid4().hex}"))  # its threads, by name
        return pools[-1]

    yield make
    for p in pools:
        p.close()


# -- unit tests ----------------------------------------------------------------------------------


def test_jobs_beyond_the_limit_wait_in_fifo_order(pool: Any) -> None:
    p, g = pool(2), Gates()
    results: dict[int, int] = {}

    async def one(n: int) -> None:
        results[n] = await p.run(g.job, n)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(one, n)
                await trio.testing.wait_all_tasks_blocked()  # submitted in this order
            await until(lambda: len(g.started) == 2, "two jobs started")
            await trio.sleep(0.1)  # a third would have had time to start
            assert g.started == [0, 1]
            for n in range(4):
                g.gate(n).set()
                await until(lambda n=n: len(g.started) == n + 3, f"job {n + 2} started")
            g.gate(4).set()
            g.gate(5).set()

    trio.run(main)
    assert g.started == [0, 1, 2, 3, 4, 5]
    assert g.peak == 2
    assert results == {n: n * 10 for n in range(6)}
    assert p.threads == 2


def test_threads_start_lazily_and_are_reused(pool: Any) -> None:
    p = pool(4)

    async def main() -> None:
        assert p.threads == 0
        for _ in range(3):  # one at a time: the one thread serves them all
            assert await p.run(threading.current_thread) in pool_threads(p)
        assert p.threads == 1
        gates = Gates()
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(p.run, gates.job, n)
            await until(lambda: len(gates.started) == 3, "three jobs started")
            assert p.threads == 3
            for n in range(3):
                gates.gate(n).set()

    trio.run(main)
    started = pool_threads(p)
    assert sorted(t.name for t in started) == [f"{p.name}-{n}" for n in (1, 2, 3)]
    assert all(t.daemon for t in started)


def test_close_stops_idle_threads_and_leaves_a_stuck_one(pool: Any) -> None:
    p, g = pool(3), Gates()
    mine: list[threading.Thread] = []

    def stuck() -> None:
        mine.append(threading.current_thread())
        g.job(0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.run, stuck)
            await until(lambda: g.started == [0], "the stuck job started")
            mine.append(await p.run(threading.current_thread))  # a second thread: the first is busy
            nursery.cancel_scope.cancel()  # the stream gives up on the stuck job

    trio.run(main)
    stuck_thread, idle = mine
    assert idle is not stuck_thread and p.threads == 2
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started < 1  # close() does not wait for anything
    idle.join(WAIT)
    assert not idle.is_alive() and stuck_thread.is_alive()
    g.gate(0).set()
    stuck_thread.join(WAIT)
    assert not stuck_thread.is_alive() and p.threads == 0

    async def after_close() -> None:
        await p.run(int)

    with pytest.raises(RuntimeError, match="closed"):
        trio.run(after_close)


def test_abandoned_job_keeps_its_slot_and_its_late_io_fails_at_once(pool: Any) -> None:
    p, g = pool(1), Gates()
    late: list[object] = []
    ran: list[str] = []

    async def never_called() -> None:
        ran.append("afn")

    def app() -> None:
        g.job(0)
        started = time.monotonic()
        try:
            to_trio(never_called)
        except OSError as exc:
            late.append(exc)
        late.append(time.monotonic() - started)

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(p.run, app)
                await until(lambda: g.started == [0], "the app started")
                scope.cancel()
        assert scope.cancelled_caught
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.run, g.job, 1)
            await trio.sleep(0.2)
            assert g.started == [0]  # the abandoned app still holds the only thread
            g.gate(0).set()
            await until(lambda: g.started == [0, 1], "the next job started")
            g.gate(1).set()

    trio.run(main)
    assert isinstance(late[0], ClientDisconnected) and "cancelled" in str(late[0])
    assert isinstance(late[1], float) and late[1] < WAIT
    assert ran == []


def test_cancel_while_the_thread_waits_in_to_trio(pool: Any) -> None:
    """The thread's pending call runs in the stream's task: cancelling that task cancels it and frees the thread."""
    p = pool(1)
    seen: list[str] = []
    done = threading.Event()

    async def hangs() -> None:
        seen.append("afn started")
        try:
            await trio.sleep_forever()
        finally:
            seen.append(f"afn in task {trio.lowlevel.current_task().name.rsplit('.', 1)[-1]}")

    def app() -> None:
        try:
            to_trio(hangs)
        except ClientDisconnected:
            seen.append("thread: ClientDisconnected")
        done.set()

    async def stream() -> None:
        await p.run(app)

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream)
                await until(lambda: seen == ["afn started"], "the thread's call running in trio")
                scope.cancel()

    trio.run(main)
    assert done.wait(WAIT)
    assert seen == ["afn started", "afn in task stream", "thread: ClientDisconnected"]


def test_job_cancelled_while_queued_is_skipped(pool: Any) -> None:
    p, g = pool(1), Gates()
    queued: Any = None

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.run, g.job, 0)
            await until(lambda: g.started == [0], "job 0 started")
            nonlocal queued
            queued = p.submit(g.job, 1)
            with trio.CancelScope() as scope:
                scope.cancel()
                await queued.wait()  # behind job 0, then given up
            g.gate(0).set()
        assert await p.run(g.job, 2) == 20

    g.gate(2).set()
    trio.run(main)
    assert g.started == [0, 2]
    assert not queued.started


def test_results_exceptions_and_calls_cross_as_before(pool: Any) -> None:
    p = pool(2)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def double(x: int) -> int:
        await trio.sleep(0)
        return 2 * x

    async def refuse() -> None:
        raise ValueError("no, from trio")

    def app() -> tuple[int, str, str]:
        try:
            to_trio(refuse)
        except ValueError as exc:
            refused = str(exc)
        before = var.get()
        var.set("set by a job")
        return to_trio(double, 21), refused, before

    def fails() -> None:
        raise KeyError("from the app")

    async def main() -> None:
        for _ in range(2):  # the second job on the same thread starts in a fresh context
            assert await p.run(app) == (42, "no, from trio", "unset")
        with pytest.raises(KeyError, match="from the app"):
            await p.run(fails)

    trio.run(main)


def test_calls_behind_keep_their_order_and_the_thread_runs_ahead(pool: Any) -> None:
    """Body chunks handed over behind are taken in order, after nothing and before a later call."""
    p = pool(1)
    taken: list[int] = []
    gate = trio.Event()
    ahead: list[int] = []

    async def take(n: int) -> None:
        if n == 0:
            await gate.wait()  # the stream task is held up on the first chunk
        taken.append(n)

    async def last() -> list[int]:
        return list(taken)

    def app() -> list[int]:
        for n in range(3):
            to_trio_behind(take, n, size=1)
            ahead.append(n)  # returned at once, while chunk 0 is still being taken
        return to_trio(last)  # waits for everything handed over before it

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def stream() -> None:
                result.append(await p.run(app))

            nursery.start_soon(stream)
            await until(lambda: ahead == [0, 1, 2], "the thread to run ahead of its chunks")
            assert taken == []
            gate.set()
        assert result == [[0, 1, 2]]

    trio.run(main)


def test_the_thread_waits_once_too_much_is_behind(pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "BEHIND_BYTES", 100)
    p = pool(1)
    handed: list[int] = []
    gate = trio.Event()

    async def take(n: int) -> None:
        await gate.wait()

    def app() -> None:
        for n in range(4):
            to_trio_behind(take, n, size=60)
            handed.append(n)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.run, app)
            # 0 and 1 (120 bytes) are over the 100-byte budget: the third call waits for the first.
            await until(lambda: handed == [0, 1], "two chunks handed over")
            await trio.sleep(0.2)
            assert handed == [0, 1]
            gate.set()
        assert handed == [0, 1, 2, 3]

    trio.run(main)


def test_a_failed_call_behind_is_raised_by_the_next_call(pool: Any) -> None:
    p = pool(1)
    taken: list[int] = []

    async def take(n: int) -> None:
        if n == 1:
            raise ClientDisconnected("stream 1 is closed")
        taken.append(n)

    async def noop() -> None:
        pass

    def app() -> str:
        for n in range(3):
            to_trio_behind(take, n, size=1)
        try:
            to_trio(noop)
        except ClientDisconnected as exc:
            return f"raised: {exc}"
        return "not raised"

    async def main() -> None:
        assert await p.run(app) == "raised: stream 1 is closed"

    trio.run(main)
    assert taken == [0]  # chunk 2 is not sent after the gap chunk 1 left


def test_to_trio_outside_the_pool_uses_from_thread() -> None:
    async def plus(x: int) -> int:
        return x + 1

    async def main() -> int:
        return await trio.to_thread.run_sync(to_trio, plus, 1)

    assert trio.run(main) == 2


def test_to_trio_after_the_trio_run_ended() -> None:
    """A pool thread whose trio run is gone gets ClientDisconnected, and its result is dropped quietly."""

    async def make_job() -> Any:
        return pool_module.Job(int, (), pool_module._Wakes(trio.lowlevel.current_trio_token()))

    job = trio.run(make_job)
    got: list[object] = []

    async def afn() -> None:
        got.append("ran")

    def worker() -> None:
        pool_module._here.job = job
        try:
            to_trio(afn)
        except ClientDisconnected as exc:
            got.append(str(exc))
        job.finish(pool_module.outcome.Value(None))  # must not raise either
        got.append("finished")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(WAIT)
    assert got == ["the server has stopped", "finished"]


# -- through the real server -------------------------------------------------------------------------


def app_lines(server: Any, key: str) -> list[str]:
    return [line.split(f"{key} ", 1)[1] for line in server.lines if f"wsgi-app: {key} " in line]


def test_threads_2_runs_six_slow_requests_two_at_a_time(serve: Any) -> None:
    server = serve(*APP, "--threads", "2")
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sids = [client.request("GET", f"/hold?key={key}&n={i}&t=0.3") for i in range(6)]
        responses = [client.response(sid) for sid in sids]
    assert [(r.status, r.body) for r in responses] == [(200, str(i).encode()) for i in range(6)]
    for i in range(6):
        server.wait_for_log(f"wsgi-app: {key} finished {i}")
    running = peak = 0
    names = set()
    for event in app_lines(server, key):
        running += 1 if event.startswith("started") else -1
        peak = max(peak, running)
        if event.startswith("started"):
            names.add(event.split(" in ")[1])
    assert peak == 2
    assert names <= {"h2gate-wsgi-1 daemon=True", "h2gate-wsgi-2 daemon=True"}, names


def test_client_reset_makes_the_apps_write_raise(serve: Any) -> None:
    server = serve(*APP)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sid = client.request("GET", f"/stream?key={key}", keep_data=False)
        client.wait_for(lambda: client.streams[sid].received > 100_000, what="some body")
        client.reset(sid)
        line = server.wait_for_log(f"wsgi-app: {key} write failed")
        assert "ClientDisconnected oserror=True" in line
        assert client.get("/").body == b"pool app\n"  # the same connection still works
    with h2c_client() as other:
        assert other.get(server.url + "/").text == "pool app\n"
    assert "Traceback" not in server.output


def test_app_raising_systemexit_is_500_and_the_server_keeps_serving(serve: Any) -> None:
    server = serve(*APP, "--threads", "1")
    with h2c_client() as client:
        assert client.get(f"{server.url}/exit?code=3").status_code == 500
        assert client.get(f"{server.url}/").text == "pool app\n"  # the only thread is still there
    server.wait_for_log(r"GET /exit: the app raised SystemExit\(3\); answered 500")
    assert server.proc.poll() is None


def test_lost_connection_abandons_the_thread_which_keeps_its_slot(serve: Any) -> None:
    """--threads 1: the app outlives its connection; its late write fails, and only then does the next request run."""
    server = serve(*APP, "--threads", "1", "--graceful-timeout", "0.3")  # also the grace of a lost connection's apps
    key, key2 = uuid.uuid4().hex, uuid.uuid4().hex
    client = RawH2(server.port)
    client.request("GET", f"/stream?key={key}&t=2")
    server.wait_for_log(f"wsgi-app: {key} started")
    client.sock.close()  # no GOAWAY: the connection is simply gone
    server.wait_for_log("the thread is left to finish")
    with h2c_client() as other:
        r = other.get(f"{server.url}/hold?key={key2}&n=1&t=0")
    assert r.text == "1"
    failed = server.wait_for_log(f"wsgi-app: {key} write failed")
    server.wait_for_log(f"wsgi-app: {key2} finished 1")
    assert "ClientDisconnected oserror=True" in failed
    lines = server.lines
    first_fail = next(i for i, line in enumerate(lines) if f"{key} write failed" in line)
    next_start = next(i for i, line in enumerate(lines) if f"{key2} started" in line)
    assert first_fail < next_start
    assert app_lines(server, key) == ["started", "write failed: ClientDisconnected oserror=True"]


def test_request_cancelled_while_queued_never_reaches_the_app(serve: Any) -> None:
    server = serve(*APP, "--threads", "1", "--graceful-timeout", "0.3")
    key = uuid.uuid4().hex
    client = RawH2(server.port)
    client.request("GET", f"/hold?key={key}&n=1&t=1")
    server.wait_for_log(f"wsgi-app: {key} started 1")
    client.request("GET", f"/hold?key={key}&n=2&t=0")  # waits for the only thread
    client.sock.close()
    server.wait_for_log(f"wsgi-app: {key} finished 1")
    with h2c_client() as other:
        assert other.get(f"{server.url}/hold?key={key}&n=3&t=0").text == "3"  # queued after n=2
    server.wait_for_log(f"wsgi-app: {key} finished 3")  # the log is read in its own thread
    assert [line.split(" in ")[0] for line in app_lines(server, key)] == [
        "started 1",
        "finished 1",
        "started 3",
        "finished 3",
    ]
    assert server.output.count("the thread is left to finish") == 1  # for n=1 only


def test_shutdown_frees_a_thread_blocked_on_flow_control(serve: Any) -> None:
    """The app waits in write() for window the client never gives: past the grace period the write fails."""
    server = serve(*APP, "--graceful-timeout", "1")
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/stream?key={key}")
        client.wait_for(lambda: client.streams[sid].received >= 65_535, what="a full window")
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < WAIT
    assert re.search(r"graceful timeout: 1 stream\(s\) from \S+ cut", server.output)
    assert "the thread is left to finish" in server.output
