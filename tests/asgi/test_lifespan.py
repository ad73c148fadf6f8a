"""The ASGI lifespan protocol against the real server: startup, state, failure, shutdown, app styles."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, h2c_client

STARTUP_FAILED = "h2gate: error: application startup failed: "


def run_until_exit(serve, app: str, *flags: str) -> tuple[int, ServerProcess]:  # type: ignore[no-untyped-def]
    """Start a server that is expected to exit by itself; return its exit code."""
    server = serve(app, *flags, wait=False)
    server.proc.wait(timeout=20)
    return server.stop(), server


def get_json(server: ServerProcess, path: str = "/") -> dict:  # type: ignore[type-arg]
    with h2c_client() as client:
        r = client.get(server.url + path)
    assert r.status_code == 200, r.text
    return r.json()


# -- startup, state, shutdown ------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_state_from_startup_is_copied_per_request(serve, loop: str) -> None:
    server = serve("apps.lifespans:stateful", "--loop", loop)
    with h2c_client() as client:
        first = client.get(server.url + "/").json()
        second = client.get(server.url + "/").json()
    expected = {"db": "connected", "loop": loop}
    assert first == {"state": expected, "loop": loop}
    # the first request added "leak" and removed "db" from its scope["state"]: neither reaches the second
    assert second == first
    assert server.stop() == 0


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_startup_runs_before_listening_and_shutdown_on_sigterm(serve, tmp_path: Path, loop: str) -> None:
    marker = tmp_path / "marker"
    server = serve("apps.lifespans:stateful", "--loop", loop, env={"LIFESPAN_MARKER": str(marker)})
    assert marker.read_text() == "startup\n"
    lines = server.lines
    assert lines.index("lifespans: startup") < next(i for i, line in enumerate(lines) if "listening on" in line)
    assert get_json(server)["state"]["db"] == "connected"
    assert server.stop(signal.SIGTERM) == 0
    assert marker.read_text() == "startup\nshutdown\n"
    assert "received SIGTERM: stopping gracefully" in server.output
    shutdown = lines.index("lifespans: shutdown")
    assert shutdown < next(i for i, line in enumerate(lines) if line.endswith("[INFO] stopped"))


def test_startup_failed_exits_nonzero_with_one_line(serve) -> None:
    code, server = run_until_exit(serve, "apps.lifespans:startup_fails")
    assert code != 0
    errors = [line for line in server.lines if line.startswith("h2gate: error:")]
    assert errors == [STARTUP_FAILED + "database unreachable at db:5432"], server.output
    assert "Traceback" not in server.output
    assert "listening on" not in server.output


# -- apps that do not do lifespan --------------------------------------------------------------


def test_auto_app_that_raises_is_served_with_one_info_line(serve) -> None:
    server = serve("apps.lifespans:raises")
    assert get_json(server) == {"served": "raises", "state": {}}
    notes = [line for line in server.lines if "ASGI lifespan" in line]
    assert len(notes) == 1, server.output
    assert "[INFO]" in notes[0]
    assert "does not support ASGI lifespan (RuntimeError: unsupported scope type 'lifespan')" in notes[0]
    assert "Traceback" not in server.output
    assert server.stop() == 0


def test_auto_app_that_returns_is_served(serve) -> None:
    server = serve("apps.lifespans:returns")
    assert get_json(server) == {"served": "returns"}
    notes = [line for line in server.lines if "ASGI lifespan" in line]
    assert len(notes) == 1 and "[INFO]" in notes[0], server.output
    assert server.stop() == 0


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_lifespan_on_with_app_that_raises_exits_nonzero(serve, loop: str) -> None:
    code, server = run_until_exit(serve, "apps.lifespans:raises", "--lifespan", "on", "--loop", loop)
    assert code != 0
    errors = [line for line in server.lines if line.startswith("h2gate: error:")]
    assert errors == [STARTUP_FAILED + "RuntimeError: unsupported scope type 'lifespan'"], server.output
    assert "listening on" not in server.output


def test_lifespan_on_with_app_that_returns_exits_nonzero(serve) -> None:
    code, server = run_until_exit(serve, "apps.lifespans:returns", "--lifespan", "on")
    assert code != 0
    assert STARTUP_FAILED + "the app returned without answering lifespan.startup" in server.lines, server.output


def test_lifespan_off_app_never_sees_lifespan(serve) -> None:
    server = serve("apps.lifespans:recorder", "--lifespan", "off")
    assert get_json(server) == {"seen": ["http"]}
    assert server.stop() == 0


def test_lifespan_auto_recorder_sees_lifespan_first(serve) -> None:
    """The control for the test above: the same app under auto does see the lifespan scope."""
    server = serve("apps.lifespans:recorder")
    assert get_json(server) == {"seen": ["lifespan", "http"]}
    assert server.stop() == 0


# -- app styles --------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_asgi2_class_app_is_detected_and_served(serve, loop: str) -> None:
    server = serve("apps.lifespans:ASGI2App", "--loop", loop)
    with h2c_client() as client:
        r = client.post(server.url + "/two", content=b"x" * 1000)
    assert r.json() == {"style": "asgi2", "path": "/two", "body": 1000}
    assert server.stop() == 0
    assert "Traceback" not in server.output


def test_factory(serve, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    server = serve("apps.lifespans:create_app", "--factory", env={"LIFESPAN_MARKER": str(marker)})
    body = get_json(server)
    assert body == {"by": "factory", "state": {"db": "connected", "loop": "asyncio"}}
    assert server.stop() == 0
    assert marker.read_text() == "startup\nshutdown\n"
