"""--reload: a change in the watched tree restarts the worker; broken code is shown, not fatal."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from h2gate.ops.reloader import path_filter
from tests.conftest import ServerProcess
from tests.procapps import versions_seen, wait_until, write_app

pytest.importorskip("watchfiles")

APP = "pidapp:app"


def start(serve, app_dir: Path, *flags: str, wait: bool = True) -> ServerProcess:
    return serve(APP, "--app-dir", str(app_dir), "--reload", "--graceful-timeout", "2", *flags, wait=wait)


def serves(server: ServerProcess, version: str) -> bool:
    return versions_seen(server.url, 2) == {version}


def test_change_restarts_and_broken_code_does_not_stop_the_reloader(serve, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    server = start(serve, tmp_path)
    server.wait_for_log("--reload: watching " + str(tmp_path))
    assert versions_seen(server.url) == {"v1"}

    write_app(tmp_path, "v2")
    wait_until(lambda: serves(server, "v2"), what="v2 to be served")
    server.wait_for_log(r"--reload: pidapp\.py changed: restarting the worker")

    write_app(tmp_path, broken=True)
    server.wait_for_log("reload failed: worker .* exited before it was ready", timeout=30)
    assert "SyntaxError" in server.output and "Traceback" not in server.output  # one line, in the reload error
    assert server.proc.poll() is None
    assert versions_seen(server.url) == {"v2"}  # the running worker kept serving

    write_app(tmp_path, "v3")
    wait_until(lambda: serves(server, "v3"), what="the fixed code to be served")
    assert server.stop() == 0


def test_starts_broken_and_comes_up_when_fixed(serve, tmp_path: Path) -> None:
    write_app(tmp_path, broken=True)
    server = start(serve, tmp_path, wait=False)
    server.wait_for_log("--reload is waiting for the next change", timeout=30)
    assert server.proc.poll() is None and not server.urls
    write_app(tmp_path, "v1")
    server.wait_ready(timeout=30)
    assert versions_seen(server.url) == {"v1"}
    assert server.stop(signal.SIGINT) == 0


def test_ignored_files_do_not_reload(serve, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    watched = tmp_path / "more"
    watched.mkdir()
    server = start(serve, tmp_path, "--reload-dir", str(watched), "--reload-include", "*.txt")
    server.wait_for_log(f"--reload: watching {watched}")
    write_app(tmp_path, "v2")  # outside the watched directory
    (watched / "notes.md").write_text("not included")
    (watched / "go.txt").write_text("included")
    server.wait_for_log(r"--reload: go\.txt changed", timeout=20)
    assert "pidapp.py changed" not in server.output and "notes.md" not in server.output
    wait_until(lambda: serves(server, "v2"), what="the reload to import v2")
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("/src/app.py", True),
        ("/src/pkg/views.py", True),
        ("/src/notes.txt", False),
        ("/src/.hidden.py", False),
        ("/src/.git/hooks/x.py", False),
        ("/src/__pycache__/app.cpython-311.py", False),
        ("/src/app.py~", False),
        ("/elsewhere/.venv/app.py", False),
    ],
)
def test_path_filter(path: str, accepted: bool) -> None:
    accept = path_filter(["*.py"], [".*", "*~", "__pycache__"], ["/src"])
    assert accept(None, path) is accepted
