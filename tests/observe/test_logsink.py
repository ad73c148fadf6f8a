"""Batched log lines (h2gate.observe.logsink): order, flush at exit and on SIGTERM, reopen, rotation, bounds, errors.

Units drive a LineSink directly; the end-to-end tests run the real server
with an access log file and stop it by SIGTERM. No timing is asserted: waits
are bounded polls for lines that must appear.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from h2gate.observe import logsink
from h2gate.observe.logsink import LineSink, SinkHandler
from tests.conftest import h2c_client

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def test_lines_from_several_handlers_keep_their_order() -> None:
    out = io.StringIO()
    sink = LineSink(stream=out)
    access, error = SinkHandler(sink), SinkHandler(sink)
    for i in range(2000):
        sink.put(f"access {i}")
        if i % 500 == 0:  # a WARNING is flushed at once, after the lines queued before it
            error.emit(logging.LogRecord("h2gate.error", logging.WARNING, __file__, 1, "warn %d", (i,), None))
    access.flush()
    lines = out.getvalue().splitlines()
    expected = []
    for i in range(2000):
        expected.append(f"access {i}")
        if i % 500 == 0:
            expected.append(f"warn {i}")
    assert lines == expected


def test_writer_thread_writes_a_file_without_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    sink = LineSink(path=str(path))
    sink.put("one")
    sink.put("two")
    wait_for(lambda: path.read_text() == "one\ntwo\n")


def test_reopen_after_rename_sends_later_lines_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = LineSink(path=str(path))
    sink.put("before")
    sink.flush()
    path.rename(tmp_path / "access.log.1")  # logrotate's move...
    sink.put("between")  # (the move is noticed by itself too: this one may land in either file)
    sink.reopen()  # ...then SIGUSR1
    sink.put("after")
    wait_for(lambda: path.exists() and path.read_text().endswith("after\n"))
    old, new = (tmp_path / "access.log.1").read_text(), path.read_text()
    assert old.startswith("before\n") and (old + new).splitlines() == ["before", "between", "after"]


def test_a_moved_file_is_noticed_without_a_signal(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    sink = LineSink(path=str(path))
    sink.put("first")
    sink.flush()
    path.rename(tmp_path / "error.log.1")
    sink.put("second")
    sink.flush()
    assert path.read_text() == "second\n" and (tmp_path / "error.log.1").read_text() == "first\n"


def test_pending_lines_are_bounded_when_the_destination_is_stuck(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file whose reader stopped (a FIFO nobody drains): put() waits at MAX_PENDING instead of growing."""
    monkeypatch.setattr(logsink, "MAX_PENDING", 10)
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = LineSink(path=str(fifo))
        done = threading.Event()
        line = "x" * 8192

        def producer() -> None:
            for i in range(100):
                sink.put(f"{i} {line}")
            done.set()

        threading.Thread(target=producer, daemon=True).start()
        wait_for(lambda: len(sink._pending) >= 10)  # the pipe is full, the writer blocked in write()
        assert not done.wait(0.2) and len(sink._pending) <= 10  # put waits: memory stays bounded
        got = bytearray()

        def drained() -> bool:
            try:
                got.extend(os.read(reader, 1 << 20))
            except BlockingIOError:
                pass
            return done.is_set() and got.count(b"\n") == 100

        wait_for(drained, timeout=20)
        assert [int(x.split()[0]) for x in bytes(got).splitlines()] == list(range(100))  # nothing dropped, in order
    finally:
        os.close(reader)


def test_stream_lines_are_written_after_the_loop_turn_not_by_a_thread() -> None:
    """In trio, a turn's lines go out after it in one write, from the loop's thread; never between a print's parts."""
    import trio

    from tests.observe.test_logsink_stream import Recording

    out = Recording()
    sink = LineSink(stream=out)

    async def main() -> None:
        sink.put("one")
        sink.put("two")
        out.write("app text")  # a print's first half...
        out.write("\n")  # ...and its newline, in the same turn: no log line between them
        assert out.getvalue() == "app text\n"
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        assert out.getvalue() == "app text\none\ntwo\n"

    trio.run(main)
    assert {name for name, _ in out.writes} == {threading.current_thread().name}
    sink.put("outside trio")  # written at once, as logging always did
    assert out.getvalue().endswith("outside trio\n")


def test_a_forked_child_gets_its_own_writer(tmp_path: Path) -> None:
    path = tmp_path / "fork.log"
    sink = logsink.sink_for(str(path), sys.stdout)
    sink.put("parent before")
    with warnings.catch_warnings():  # 3.12+ warns about fork() with threads running: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: fresh locks and thread; the parent's queued line is the parent's to write
        sink.put("child")
        sink.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    sink.flush()
    assert sorted(path.read_text().splitlines()) == ["child", "parent before"]


def test_a_write_error_is_reported_once_and_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    reported = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", reported)
    out = io.StringIO()
    sink = LineSink(stream=out)
    out.close()
    for _ in range(3):
        sink.put("lost")
        sink.flush()
    assert reported.getvalue().count("could not be written") == 1


def test_lines_are_flushed_at_exit(tmp_path: Path) -> None:
    """A process that puts lines and returns at once still writes all of them (atexit)."""
    path = tmp_path / "out.log"
    code = (
        "from h2gate.observe.logsink import sink_for\n"
        "import sys\n"
        f"sink = sink_for({str(path)!r}, sys.stdout)\n"
        "for i in range(5000): sink.put(f'line {i}')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    assert path.read_text().splitlines() == [f"line {i}" for i in range(5000)]


def test_access_lines_survive_sigterm_in_order(serve: Any, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    server = serve("apps.observe:app", "--access-logfile", str(access))
    with h2c_client() as client:
        for i in range(200):
            client.get(f"{server.url}/n{i}")
    assert server.stop(signal_number()) == 0  # SIGTERM right after the last answer
    lines = access.read_text().splitlines()
    paths = [re.search(r'"GET /n(\d+) HTTP/2"', line) for line in lines]
    assert [int(m.group(1)) for m in paths if m] == list(range(200)), lines[-3:]


def signal_number() -> int:
    import signal

    return signal.SIGTERM


def test_reopen_hook_is_what_sigusr1_handling_calls(tmp_path: Path) -> None:
    """observe.logs.reopen() reopens our files (ops wires SIGUSR1 to it)."""
    from h2gate.config import Config
    from h2gate.observe import logs

    path = tmp_path / "access.log"
    config = Config(access_logfile=str(path), error_logfile=str(tmp_path / "error.log"))
    ours, access = logging.getLogger("h2gate"), logs.access_logger
    saved = (ours.handlers[:], ours.level, ours.propagate, access.handlers[:], access.propagate, access.level)
    saved_sink, saved_disabled = logs._state.sink, access.disabled
    logs.setup_logging("info", True, config)
    try:
        logs.access_logger.info("one")
        logs.flush()
        os.rename(path, tmp_path / "access.log.1")
        logs.reopen()
        logs.access_logger.info("two")
        logs.flush()
        assert "one" in (tmp_path / "access.log.1").read_text() and "two" in path.read_text()
    finally:  # the test process's logging as it was
        ours.handlers[:], ours.level, ours.propagate, access.handlers[:], access.propagate, access.level = saved
        logs._state.sink, access.disabled = saved_sink, saved_disabled
