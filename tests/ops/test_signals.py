"""Signals as operators send them, to the real server: one process, the supervisor and a worker.

The meanings are h2gate/ops/signals.py's TABLE; docs/operations.md shows it (checked at the end).
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from h2gate.ops.signals import LEFT_ALONE, TABLE
from tests.conftest import ROOT, ServerProcess, h2c_client
from tests.observe.test_metrics import metrics_url, scrape, value
from tests.procapps import ask, wait_until, worker_pids, write_app

APP = "pidapp:app"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def start(serve, app_dir: Path, *flags: str, **kw: object) -> ServerProcess:
    return serve(APP, "--app-dir", str(app_dir), "--graceful-timeout", "5", *flags, **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def file_has(path: Path, pattern: str) -> bool:
    return path.exists() and re.search(pattern, path.read_text()) is not None


@pytest.mark.parametrize("workers", [None, "2"], ids=["single", "supervisor"])
def test_sigusr1_reopens_the_log_files(serve, app_dir: Path, tmp_path: Path, workers: str | None) -> None:
    """logrotate's postrotate step: rename the files, SIGUSR1, and every process writes to new ones."""
    errors, access, pid_file = tmp_path / "error.log", tmp_path / "access.log", tmp_path / "h2gate.pid"
    flags = ["--error-logfile", str(errors), "--access-logfile", str(access), "--pid", str(pid_file)]
    server = start(serve, app_dir, *flags, *(["-w", workers] if workers else []), wait=False)
    wait_until(lambda: file_has(errors, "listening on http://"), what="the startup block")
    port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)", errors.read_text())[0])
    url = f"http://127.0.0.1:{port}"
    with h2c_client() as client:
        ask(client, url, "/before")
    wait_until(lambda: file_has(access, "/before"), what="the first access line")
    errors.rename(tmp_path / "error.log.1")
    access.rename(tmp_path / "access.log.1")
    server.send_signal(signal.SIGUSR1)
    server.signalled = False
    wait_until(lambda: file_has(errors, r"received SIGUSR1: reopened \d+ log file"), what="the reopen line")
    if workers:
        # The supervisor and each worker reopen their own files.
        wait_until(lambda: len(re.findall("received SIGUSR1", errors.read_text())) == 3, what="3 reopen lines")
    for _ in range(4):
        with h2c_client() as client:
            ask(client, url, "/after")
    wait_until(lambda: file_has(access, "/after"), what="an access line in the new file")
    assert "/after" not in (tmp_path / "access.log.1").read_text()
    assert alive(server.proc.pid) and pid_file.exists()
    assert server.stop() == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("name", ["SIGTTIN", "SIGTTOU", "SIGUSR2"])
def test_single_process_ignores_what_it_cannot_do(serve, app_dir: Path, name: str) -> None:
    server = start(serve, app_dir)
    server.send_signal(getattr(signal, name))
    server.signalled = False
    server.wait_for_log(f"received {name}: ignored")
    with h2c_client() as client:
        assert ask(client, server.url)[0] == "v1"  # not stopped (SIGTTIN's default), not killed
    assert server.stop() == 0


def _hang(url: str, outcome: list[object]) -> None:
    try:
        with h2c_client() as client:
            outcome.append(client.get(url + "/hang").status_code)
    except httpx.HTTPError as exc:
        outcome.append(exc)


@pytest.mark.parametrize("workers", [None, "2"], ids=["single", "supervisor"])
def test_sigquit_is_a_quick_stop(serve, app_dir: Path, workers: str | None) -> None:
    server = start(serve, app_dir, "--graceful-timeout", "30", *(["-w", workers] if workers else []))
    outcome: list[object] = []
    thread = threading.Thread(target=_hang, args=(server.url, outcome))
    thread.start()
    wait_until(lambda: (app_dir / "blocked").exists(), what="the request to start")
    server.send_signal(signal.SIGQUIT)
    assert server.stop(timeout=15) == 0  # far less than --graceful-timeout 30
    thread.join(30)
    assert outcome and not isinstance(outcome[0], int)  # the hanging request was cut, not answered
    assert "received SIGQUIT: quick stop" in server.output


def test_sigttin_adds_and_sigttou_removes_a_worker(serve, app_dir: Path) -> None:
    server = start(serve, app_dir, "-w", "2")
    first = worker_pids(server)
    assert len(first) == 2
    server.send_signal(signal.SIGTTIN)
    server.signalled = False
    server.wait_for_log(r"received SIGTTIN: 3 worker\(s\) now")
    wait_until(lambda: len(worker_pids(server)) == 3, what="the third worker")
    third = worker_pids(server)[2]
    wait_until(lambda: _answers_from(server.url, third), what="the third worker to answer")
    server.send_signal(signal.SIGTTOU)
    server.signalled = False
    server.wait_for_log(rf"received SIGTTOU: 2 worker\(s\) now; stopping {third} gracefully")
    server.wait_for_log(rf"worker {third} exited \(exit status 0\)")
    server.send_signal(signal.SIGTTOU)
    server.signalled = False
    server.wait_for_log(r"received SIGTTOU: 1 worker\(s\) now")
    server.send_signal(signal.SIGTTOU)  # one at a time: the kernel merges a signal sent while one is pending
    server.signalled = False
    server.wait_for_log(r"received SIGTTOU: staying at 1 worker\(s\) \(the minimum\)")
    with h2c_client() as client:
        assert ask(client, server.url)[0] == "v1"
    assert "unexpectedly" not in server.output
    assert server.stop() == 0


def _answers_from(url: str, pid: int) -> bool:
    with h2c_client() as client:
        return any(ask(client, url)[1] == pid for _ in range(20))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_stopped_by_an_operator_is_replaced_at_once(serve, app_dir: Path, workers: str) -> None:
    flags = ["--metrics-bind", "127.0.0.1:0", *(["--supervise"] if workers == "1" else [])]
    server = start(serve, app_dir, "-w", workers, *flags)
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGTERM)
    line = server.wait_for_log(rf"worker {victim} received SIGTERM from outside the supervisor")
    replacement = int(re.search(r"worker (\d+) replaces it", line).group(1))  # type: ignore[union-attr]
    server.wait_for_log(rf"worker {victim} exited \(exit status 0\) after SIGTERM from outside the supervisor")
    wait_until(lambda: _answers_from(server.url, replacement), what="the replacement to answer")
    assert "unexpectedly" not in server.output and "restarting it in" not in server.output
    assert value(scrape(metrics_url(server)), "h2gate_worker_restarts_total") == 0  # not a crash
    assert server.stop() == 0


def test_worker_ignores_ttin_and_passes_usr2(serve, app_dir: Path) -> None:
    server = start(serve, app_dir, "-w", "1", "--supervise")
    worker = worker_pids(server)[0]
    os.kill(worker, signal.SIGTTIN)
    server.wait_for_log("received SIGTTIN: ignored; the number of workers is changed by sending it to the supervisor")
    server.send_signal(signal.SIGUSR2)
    server.signalled = False
    server.wait_for_log("received SIGUSR2: ignored")
    assert alive(worker) and alive(server.proc.pid)
    assert server.stop() == 0


def test_the_signal_table_is_in_the_docs() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `SIG")}
    for meaning in TABLE:
        row = rows.get(meaning.name)
        assert row is not None, f"{meaning.name} missing from the signal table in docs/operations.md"
        for cell in (meaning.supervisor, meaning.worker, meaning.single):
            assert cell in row, (meaning.name, cell)
    for name, why in LEFT_ALONE.items():
        assert name in rows and why in rows[name], name
