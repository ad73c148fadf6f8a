"""The stream flusher (h2gate.observe.logsink, stderr/stdout): after the turn, paused batches, order, bounds, exit.

Units drive a LineSink on a recording stream inside ``trio.run`` with a
``MockClock`` that only moves when the test jumps it, so "still waiting" and
"written now" are decided by the scheduler, never by timing. The end-to-end
test runs the real server with the access log on stderr (the default) on both
loops and stops it by SIGTERM right after the last answer.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import threading
from typing import Any

import pytest
import trio
import trio.testing

from h2gate.observe import logsink
from h2gate.observe.logsink import LINGER, LineSink, SinkHandler
from tests.conftest import h2c_client


class Recording(io.StringIO):
    """A stream that remembers each write: its thread and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((threading.current_thread().name, text))
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


async def turns(n: int = 3) -> None:
    """Let the scheduler run ``n`` batches (the flusher runs in the batch after it was woken)."""
    for _ in range(n):
        await trio.lowlevel.checkpoint()


def run_paused(main: Any) -> None:
    """``trio.run(main, clock)``: time stands still unless ``main`` jumps the clock."""
    clock = trio.testing.MockClock()
    trio.run(main, clock, clock=clock)


def test_a_line_after_a_quiet_spell_goes_out_after_its_turn_and_a_busy_spell_once_per_pause() -> None:
    out = Recording()
    sink = LineSink(stream=out)

    async def main(clock: trio.testing.MockClock) -> None:
        sink.put("first")
        assert out.lines() == []  # not inside the task that put it
        await turns()
        assert out.lines() == ["first"] and len(out.writes) == 1
        for i in range(3):  # three more turns with lines, during the flusher's pause: no write yet
            sink.put(f"busy {i}")
            await turns()
        assert out.lines() == ["first"]
        clock.jump(LINGER)
        await turns()
        assert out.lines() == ["first", "busy 0", "busy 1", "busy 2"] and len(out.writes) == 2  # one write
        clock.jump(LINGER)  # a pause that brings nothing: the flusher parks
        await turns()
        sink.put("after the quiet spell")
        await turns()
        assert out.lines()[-1] == "after the quiet spell" and len(out.writes) == 3

    run_paused(main)
    assert {name for name, _ in out.writes} == {threading.current_thread().name}


def test_lines_and_records_from_many_tasks_keep_their_order() -> None:
    out = Recording()
    sink = LineSink(stream=out)
    error = SinkHandler(sink)
    expected: list[str] = []

    async def worker(n: int, clock: trio.testing.MockClock) -> None:
        for i in range(50):
            line = f"task {n} line {i}"
            expected.append(line)
            sink.put(line)
            if i % 20 == 19:  # an error record goes out at once, after every line queued before it
                expected.append(f"warn {n} {i}")
                error.emit(logging.LogRecord("h2gate.error", logging.WARNING, __file__, 1, "warn %d %d", (n, i), None))
            await trio.lowlevel.checkpoint()
            if i % 7 == 0:
                clock.jump(LINGER / 2)

    async def main(clock: trio.testing.MockClock) -> None:
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(worker, n, clock)

    run_paused(main)
    assert out.lines() == expected


def test_lines_queued_during_a_pause_are_written_when_the_run_ends() -> None:
    """The flusher is a system task of the run: cancelled as the run ends, it writes what is left."""
    out = Recording()
    sink = LineSink(stream=out)

    async def main(clock: trio.testing.MockClock) -> None:
        sink.put("one")
        await turns()
        sink.put("two")  # the flusher is pausing: "two" waits...
        await turns()
        assert out.lines() == ["one"]

    run_paused(main)  # ...and is out when trio.run returns, without a flush() or atexit
    assert out.lines() == ["one", "two"]
    assert sink._flusher_token is None


def test_a_burst_is_written_whole_in_order_with_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many lines in one turn: never more than MAX_STREAM_BATCH queued, none lost, order kept."""
    monkeypatch.setattr(logsink, "MAX_STREAM_BATCH", 100)
    out = Recording()
    sink = LineSink(stream=out)
    most = 0

    async def main(clock: trio.testing.MockClock) -> None:
        nonlocal most
        sink.put("start")
        await turns()  # the flusher wrote "start" and pauses: the burst below finds nobody to wake
        for i in range(1050):
            sink.put(f"burst {i}")
            most = max(most, len(sink._pending))

    run_paused(main)
    assert most <= 100
    assert out.lines() == ["start", *(f"burst {i}" for i in range(1050))]
    assert all(text.count("\n") <= 100 for _, text in out.writes)


def test_each_run_gets_its_own_flusher_and_lines_outside_trio_go_at_once() -> None:
    out = Recording()
    sink = LineSink(stream=out)
    tokens = []

    async def main() -> None:
        sink.put(f"run {len(tokens)}")
        await turns()
        tokens.append(sink._flusher_token)
        assert tokens[-1] is trio.lowlevel.current_trio_token()

    trio.run(main)
    sink.put("between runs")
    assert out.lines() == ["run 0", "between runs"]
    trio.run(main)
    assert out.lines() == ["run 0", "between runs", "run 1"] and tokens[0] is not tokens[1]

    def other_thread() -> None:
        sink.put("from a thread")  # not trio's thread: written at once, by that thread

    async def with_a_thread() -> None:
        await trio.to_thread.run_sync(other_thread)
        assert out.lines()[-1] == "from a thread"

    trio.run(with_a_thread)


def test_a_stream_that_fails_oddly_does_not_crash_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flusher is a system task: an exception out of it would crash trio. It is reported instead."""
    reported = io.StringIO()
    monkeypatch.setattr("sys.__stderr__", reported)

    class Odd(io.StringIO):
        def write(self, text: str) -> int:
            raise RuntimeError("odd stream")

    sink = LineSink(stream=Odd())

    async def main() -> None:
        sink.put("lost")
        await turns()

    trio.run(main)
    assert "odd stream" in reported.getvalue()


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_stderr_access_lines_survive_sigterm_in_order(serve: Any, loop: str) -> None:
    """The default destination, stderr: every line of a burst, in order, though SIGTERM comes mid-pause."""
    server = serve("apps.observe:app", "--loop", loop)
    with h2c_client() as client:
        for i in range(300):
            client.get(f"{server.url}/n{i}")
    assert server.stop(signal.SIGTERM) == 0
    found = [re.search(r'"GET /n(\d+) HTTP/2" 200', line) for line in server.lines]
    assert [int(m.group(1)) for m in found if m] == list(range(300)), server.output[-2000:]
