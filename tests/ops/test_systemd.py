"""systemd: socket activation (LISTEN_FDS) and sd_notify (NOTIFY_SOCKET), faked with real sockets."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2gate.errors import StartupError
from h2gate.ops import systemd
from tests.conftest import ServerProcess, h2c_client
from tests.procapps import ask, write_app

# Puts the inherited socket on fd 3 and names this very process in LISTEN_PID, as systemd does.
ACTIVATE = """
import os, sys
fd = int(os.environ.pop("TEST_ACTIVATE_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
os.execv(sys.executable, [sys.executable, "-m", "h2gate", *sys.argv[1:]])
"""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    write_app(tmp_path)
    procs: list[ServerProcess] = []

    def start(*flags: str, env: dict[str, str] | None = None, activate: socket.socket | None = None) -> ServerProcess:
        args = ["pidapp:app", "--app-dir", str(tmp_path), "--graceful-timeout", "3", *flags]
        if activate is None:
            proc = ServerProcess(args, env)
        else:
            env = {**(env or {}), "TEST_ACTIVATE_FD": str(activate.fileno())}
            command = [sys.executable, "-c", ACTIVATE]
            proc = ServerProcess(args, env, command=command, pass_fds=(activate.fileno(),))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation_uses_the_passed_socket(spawn, listener: socket.socket, workers: str) -> None:
    port = listener.getsockname()[1]
    server = spawn("-w", workers, "-b", "127.0.0.1:0", activate=listener).wait_ready()
    assert server.url == f"http://127.0.0.1:{port}"
    assert "socket activation: using 1 socket(s) from systemd: fd 3 (web); --bind is ignored" in server.output
    listener.close()  # only h2gate holds it now
    with h2c_client() as client:
        assert ask(client, server.url)[0] == "v1"
    assert server.stop() == 0


def test_listen_pid_of_another_process_is_ignored(spawn) -> None:
    server = spawn("-b", "127.0.0.1:0", env={"LISTEN_FDS": "1", "LISTEN_PID": "1"}).wait_ready()
    assert "socket activation" not in server.output
    with h2c_client() as client:
        assert ask(client, server.url)[0] == "v1"
    assert server.stop() == 0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(20)
    yield sock
    sock.close()


def messages(sock: socket.socket, until: str) -> list[dict[str, str]]:
    """Datagrams received until one contains the line ``until`` (bounded by the socket timeout)."""
    out = []
    for _ in range(50):
        text = sock.recv(4096).decode()
        out.append(dict(line.split("=", 1) for line in text.splitlines()))
        if until in text.splitlines():
            return out
    raise AssertionError(f"no {until} in {out}")


def test_notify_single_process(spawn, notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    server = spawn("-b", "127.0.0.1:0", env=env)
    ready = messages(notify_socket, "READY=1")[-1]
    assert ready["MAINPID"] == str(server.proc.pid)
    server.wait_ready()
    # SIGHUP reloads in place (certificates): systemd still hears RELOADING=1 then READY=1, as with -w N.
    server.send_signal(signal.SIGHUP)
    server.signalled = False
    during = messages(notify_socket, "READY=1")
    assert "RELOADING" in during[0] and int(during[0]["MONOTONIC_USEC"]) > 0
    server.send_signal(signal.SIGTERM)
    assert messages(notify_socket, "STOPPING=1")
    assert server.stop() == 0


def test_notify_supervisor_ready_reload_stopping(spawn, notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    server = spawn("-w", "2", "-b", "127.0.0.1:0", env=env)
    first = messages(notify_socket, "READY=1")
    assert len(first) == 1 and first[0]["MAINPID"] == str(server.proc.pid)  # workers do not notify
    server.wait_ready()
    server.send_signal(signal.SIGHUP)
    server.signalled = False
    during = messages(notify_socket, "READY=1")
    assert "RELOADING" in during[0] and int(during[0]["MONOTONIC_USEC"]) > 0
    server.wait_for_log("reload complete")
    server.send_signal(signal.SIGTERM)
    assert messages(notify_socket, "STOPPING=1")
    assert server.stop() == 0


# -- units --------------------------------------------------------------------------------------


def test_listen_fds_parsing() -> None:
    assert systemd.listen_fds({}) == []
    other = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}
    assert systemd.listen_fds(other) == [] and "LISTEN_FDS" in other  # not ours: left alone
    with pytest.raises(StartupError, match="not numbers"):
        systemd.listen_fds({"LISTEN_FDS": "x", "LISTEN_PID": str(os.getpid())})
    with pytest.raises(StartupError, match=r"LISTEN_FDS=4000 but file descriptor \d+ is not open"):
        systemd.listen_fds({"LISTEN_FDS": "4000", "LISTEN_PID": str(os.getpid())})
    with pytest.raises(StartupError, match="more sockets than"):
        systemd.listen_fds({"LISTEN_FDS": "5000", "LISTEN_PID": str(os.getpid())})
    env = {"LISTEN_FDS": "0", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": ""}
    assert systemd.listen_fds(env) == [] and env == {}


def test_notify_abstract_socket_and_without_socket() -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "not-a-path"}) is False
    name = f"h2gate-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert systemd.notify("READY=1", "STATUS=x", environ={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


def test_child_environment_drops_systemd_variables() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "5", "LISTEN_FDNAMES": "a", "NOTIFY_SOCKET": "/x", "PATH": "/bin"}
    assert systemd.child_environment(env) == {"PATH": "/bin"}


def test_example_units_agree_with_the_server() -> None:
    conf = Path(__file__).resolve().parents[2] / "conf" / "systemd"
    lines = (conf / "h2gate.service").read_text().splitlines()
    service = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert service["Type"] == "notify" and service["KillSignal"] == "SIGTERM"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    start = service["ExecStart"].split()
    graceful = float(start[start.index("--graceful-timeout") + 1])
    from h2gate.ops.operator import STOP_MARGIN

    assert float(service["TimeoutStopSec"]) > graceful + STOP_MARGIN
    socket_unit = (conf / "h2gate.socket").read_text()
    assert "ListenStream=127.0.0.1:8000" in socket_unit and "Service=h2gate.service" in socket_unit
