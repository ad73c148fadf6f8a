"""``--loop asyncio``: the asyncio loop hosted in the trio run serves every way asyncio code waits."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ServerProcess, h2c_client


@pytest.fixture
def hosted(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve("apps.hosted:app", "--loop", "asyncio", "--lifespan", "off")


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"echo:" + self.rfile.readline())


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/library", "asyncio True"),
        ("/sleep", "slept"),
        ("/wait-for", "timed out"),
        ("/executor", "45"),
        ("/threadsafe", "woken from a thread"),
    ],
)
def test_asyncio_waits_complete(hosted: ServerProcess, path: str, body: str) -> None:
    with h2c_client() as client:
        r = client.get(hosted.url + path)
    assert (r.status_code, r.text) == (200, body)


def test_app_opens_asyncio_socket(hosted: ServerProcess, echo_port: int) -> None:
    with h2c_client() as client:
        r = client.get(f"{hosted.url}/socket", params={"port": echo_port})
    assert (r.status_code, r.text) == (200, "echo:ping")


def test_asyncio_signal_handlers_are_refused_and_sigterm_still_works(hosted: ServerProcess) -> None:
    """An app cannot take the signal wake-up fd from trio: SIGTERM still stops the server cleanly."""
    with h2c_client() as client:
        r = client.get(hosted.url + "/signal")
    assert r.text == "h2gate handles the process's signals itself; an app cannot add asyncio signal handlers"
    assert hosted.stop() == 0, hosted.output


def test_background_task_outlives_its_request(hosted: ServerProcess) -> None:
    with h2c_client() as client:
        assert client.get(hosted.url + "/background", params={"key": "k1"}).text == "started"
        deadline = time.monotonic() + 10
        state = "pending"
        while state == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
            state = client.get(hosted.url + "/background-state", params={"key": "k1"}).text
    assert state == "done"


def test_many_concurrent_timer_waits(hosted: ServerProcess) -> None:
    """Fifty requests parked on asyncio timers at once, over one connection and over several."""
    with h2c_client() as client, ThreadPoolExecutor(10) as pool:
        paths = ["/sleep", "/wait-for", "/executor", "/threadsafe", "/library"] * 10
        results = list(pool.map(lambda p: client.get(hosted.url + p), paths))
    assert all(r.status_code == 200 for r in results)
    assert sorted({r.text for r in results}) == ["45", "asyncio True", "slept", "timed out", "woken from a thread"]
    assert "ERROR" not in hosted.output


def test_app_called_inside_the_loop(serve: Callable[..., ServerProcess]) -> None:
    """Code an app runs when it is called (before its coroutine starts) already sees the running loop."""
    server = serve("apps.hosted:sync_entry", "--loop", "asyncio", "--lifespan", "off", "--interface", "asgi")
    with h2c_client() as client:
        r = client.get(server.url + "/sleep")
    assert (r.status_code, r.text) == (200, "slept")
    assert "ERROR" not in server.output
