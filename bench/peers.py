"""The servers the bench scripts compare: one command line each, for the same app on the same TLS port.

Every server serves bench/app.py (ASGI) or bench/wsgi_app.py (WSGI, the same
routes) with one worker process, TLS with the throwaway certificate, HTTP/2
by ALPN, and no access log unless the row says so. A server that cannot run
here says why (``ServerSpec.unavailable``) and is skipped with that reason.

The field, ASGI: h2gate (asyncio and trio loops with the h2 codec;
``h2gate-asyncio-log`` is the default as users run it, access log on;
``h2gate-ngh2-*`` with the native codec, ``--codec ngh2``; ``h2gate-ngh2-asyncio-log`` is
what ``pip install 'h2gate[fast]'`` users run), Hypercorn (asyncio, trio), Granian
(Rust, hyper), h2corn (Rust, hyper), pyvoy (Envoy, C++), Uvicorn with the
zttp codec (``--http zttp --http2``: Python server, Zig HTTP/2 codec).
WSGI: h2gate, Hypercorn, Granian, Gunicorn gthread (HTTP/2 since 25 with
``--http-protocols h2``), pyvoy.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.servers import HOST, ROOT, ServerSpec, module_version

APP = "bench.app:app"
WSGI_APP = "bench.wsgi_app:app"
Argv = Callable[[int, Path, Path], list[str]]


def _h2gate(app: str, *extra: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [
            sys.executable, "-m", "h2gate", app, "--app-dir", str(ROOT),
            "-b", f"{HOST}:{port}", "--certfile", str(cert), "--keyfile", str(key), *extra,
        ]  # fmt: skip

    return argv


def _hypercorn(app: str, worker: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        # Hypercorn closes a connection after keep_alive_max_requests (default 1000) requests and
        # h2load does not reconnect, so a 20000-request run on 10 connections would half fail.
        # The setting has no command-line flag; raise it through a config file.
        config = cert.parent / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")
        return [
            sys.executable, "-m", "hypercorn", app, "--config", str(config),
            "--certfile", str(cert), "--keyfile", str(key),
            "-b", f"{HOST}:{port}", "--workers", "1", "-k", worker,
        ]  # fmt: skip

    return argv


def _granian(interface: str, app: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", interface, "--http", "2", "--no-ws",
            "--host", HOST, "--port", str(port), "--workers", "1",
            "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), app,
        ]  # fmt: skip

    return argv


def _h2corn(port: int, cert: Path, key: Path) -> list[str]:
    # h2corn logs every request by default; the table compares servers without an access log.
    return [
        sys.executable, "-m", "h2corn", APP, "--app-dir", str(ROOT), "-b", f"{HOST}:{port}", "-w", "1",
        "--certfile", str(cert), "--keyfile", str(key), "--no-access-log",
    ]  # fmt: skip


def _pyvoy(interface: str, app: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        # With --tls-key/--tls-cert and no --tls-port, the one port speaks TLS (ALPN h2, http/1.1).
        # pyvoy has no ``python -m pyvoy``: its console script's entry point, run by this interpreter.
        return [
            sys.executable, "-c", "import sys; from pyvoy._cli import main; sys.exit(main())",
            app, "--address", HOST, "--port", str(port),
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-disable-http3", "--interface", interface,
        ]  # fmt: skip

    return argv


def _uvicorn_zttp(port: int, cert: Path, key: Path) -> list[str]:
    # Uvicorn's defaults otherwise (its loop "auto" picks uvloop when installed, as users get it).
    return [
        sys.executable, "-m", "uvicorn", APP, "--app-dir", str(ROOT), "--host", HOST, "--port", str(port),
        "--http", "zttp", "--http2", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
        "--no-access-log", "--log-level", "warning", "--workers", "1",
    ]  # fmt: skip


def _gunicorn_wsgi(port: int, cert: Path, key: Path) -> list[str]:
    # Gunicorn >= 25 speaks HTTP/2 with --http-protocols h2 (TLS, ALPN); one gthread worker, 10 threads.
    return [
        sys.executable, "-m", "gunicorn", WSGI_APP, "--chdir", str(ROOT),
        "-b", f"{HOST}:{port}", "--certfile", str(cert), "--keyfile", str(key),
        "--http-protocols", "h2", "--workers", "1", "--worker-class", "gthread", "--threads", "10",
        "--log-level", "warning",
    ]  # fmt: skip


def _help_mentions(module: str, flag: str, why: str) -> Callable[[], str | None]:
    """A check: None when ``python -m module --help`` lists ``flag``, else ``why`` (with the version)."""

    def check() -> str | None:
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{module} --help failed: {exc}"
        if flag not in done.stdout:
            return f"{module} {module_version(module)} has no {flag} ({why})"
        return None

    return check


_QUIET = ("--no-access-log", "--log-level", "warning")
#: The h2gate rows without "ngh2" in their name run the pure-Python codec whatever is installed.
_H2 = ("--codec", "h2")
SPECS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("h2gate-asyncio", _h2gate(APP, "--loop", "asyncio", *_H2, *_QUIET), "h2gate"),
        ServerSpec("h2gate-trio", _h2gate(APP, "--loop", "trio", *_H2, *_QUIET), "h2gate"),
        # The defaults as users run them: asyncio loop, access log on (to the server's log file here).
        ServerSpec("h2gate-asyncio-log", _h2gate(APP, "--loop", "asyncio", *_H2), "h2gate"),
        # The native codec (pip install 'h2gate[fast]'), issue 22's second target.
        ServerSpec(
            "h2gate-ngh2-asyncio",
            _h2gate(APP, "--loop", "asyncio", "--codec", "ngh2", *_QUIET),
            "h2gate",
            extras=("ngh2",),
        ),
        # Target 2 names the defaults otherwise: the native codec with the asyncio loop and the access log on.
        ServerSpec(
            "h2gate-ngh2-asyncio-log",
            _h2gate(APP, "--loop", "asyncio", "--codec", "ngh2"),
            "h2gate",
            extras=("ngh2",),
        ),
        ServerSpec(
            "h2gate-ngh2-trio",
            _h2gate(APP, "--loop", "trio", "--codec", "ngh2", *_QUIET),
            "h2gate",
            extras=("ngh2",),
        ),
        ServerSpec("hypercorn-asyncio", _hypercorn(APP, "asyncio"), "hypercorn"),
        ServerSpec("hypercorn-trio", _hypercorn(APP, "trio"), "hypercorn"),
        ServerSpec("granian", _granian("asgi", APP), "granian"),
        ServerSpec("h2corn", _h2corn, "h2corn"),
        ServerSpec("pyvoy", _pyvoy("asgi", APP), "pyvoy"),
        ServerSpec(
            "uvicorn-zttp",
            _uvicorn_zttp,
            "uvicorn",
            extras=("zttp",),
            check=_help_mentions("uvicorn", "--http2", "HTTP/2 needs a Uvicorn with --http zttp --http2"),
        ),
        ServerSpec("h2gate-wsgi", _h2gate(WSGI_APP, *_H2, *_QUIET), "h2gate"),
        ServerSpec("hypercorn-wsgi", _hypercorn(WSGI_APP, "asyncio"), "hypercorn"),
        ServerSpec("granian-wsgi", _granian("wsgi", WSGI_APP), "granian"),
        ServerSpec(
            "gunicorn-wsgi",
            _gunicorn_wsgi,
            "gunicorn",
            check=_help_mentions("gunicorn", "--http-protocols", "HTTP/2 needs gunicorn>=25"),
        ),
        ServerSpec("pyvoy-wsgi", _pyvoy("wsgi", WSGI_APP), "pyvoy"),
    )
}
ALL_SERVERS = tuple(SPECS)
#: the rows each kind of row is compared with ("vs baseline")
BASELINE = "hypercorn-asyncio"
WSGI_BASELINE = "hypercorn-wsgi"
#: servers from the bench extra or elsewhere that may still be missing: their absence is reported, not an error
OPTIONAL = tuple(name for name in SPECS if not name.startswith("h2gate") or "ngh2" in name)


_PROBE = (
    "import importlib.util, json, h2gate; from importlib import metadata; "
    "ngh2 = metadata.version('ngh2') if importlib.util.find_spec('ngh2') else None; "
    "print(json.dumps([h2gate.__file__, h2gate.__version__, h2gate.build(), ngh2]))"
)


@functools.cache
def _probe(python: str) -> tuple[str, str, str, str | None] | str:
    """(h2gate's file, version, build, ngh2 version or None) as ``python -P`` imports them, or why not."""
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as the server runs (below)
        done = subprocess.run(
            [python, "-P", "-c", _PROBE], capture_output=True, text=True, timeout=60, cwd="/", env=env
        )
    except OSError as exc:
        return f"{python}: {exc}"
    if done.returncode != 0:
        return f"{python} cannot import h2gate: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    path, version, build, ngh2 = json.loads(done.stdout)
    if Path(path).resolve().is_relative_to(ROOT):
        return f"{python} imports h2gate from this checkout ({path}), not an installed build"
    return path, version, build, ngh2


@functools.cache
def _app_dir() -> Path:
    """A directory with only the bench apps (``bench.app``, ``wsgi_app``, ``flow_app``): no h2gate/ in it."""
    where = Path(tempfile.mkdtemp(prefix="h2gate-bench-apps-"))
    atexit.register(shutil.rmtree, where, True)
    (where / "bench").mkdir()
    (where / "bench" / "__init__.py").write_text("")
    for name in ("app.py", "wsgi_app.py", "flow_app.py"):
        shutil.copy2(ROOT / "bench" / name, where / "bench" / name)
    return where


def installed_h2gate(spec: ServerSpec, python: str, name: str | None = None) -> ServerSpec:
    """``spec`` (an h2gate row) served by the h2gate installed for another ``python`` (a venv's bin/python).

    For the row as released: a venv with the compiled wheel (``pip install 'h2gate-...whl[fast]'``). The
    server runs ``python -P -m h2gate`` without PYTHONPATH and with an --app-dir holding only copies of the
    bench apps, so neither the environment, the working directory nor the app dir can put this checkout's
    ``h2gate/`` in front of the installed one (run.py prints what each server says it runs);
    the row is skipped, saying why, when that Python imports h2gate from this checkout all the same. The
    version column shows the build that Python imports (``compiled with mypyc`` or ``pure Python``).
    """

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        command = spec.argv(port, cert, key)
        assert command[:3] == [sys.executable, "-m", "h2gate"], command
        at = command.index("--app-dir") + 1
        # ServerProcess puts this checkout on PYTHONPATH (for the peers' imports of bench.app): not for this one.
        return ["env", "-u", "PYTHONPATH", python, "-P", *command[1:at], str(_app_dir()), *command[at + 1 :]]

    def check() -> str | None:
        probe = _probe(python)
        if isinstance(probe, str):
            return probe
        if "ngh2" in spec.extras and probe[3] is None:
            return f"ngh2 is not installed for {python} (pip install 'h2gate[fast]')"
        return None

    def describe() -> str:
        probe = _probe(python)
        if isinstance(probe, str):
            return "?"
        _, version, build, ngh2 = probe
        return f"{version} {'mypyc' if 'mypyc' in build else 'pure'}" + (
            f" (ngh2 {ngh2})" if ngh2 and spec.extras else ""
        )

    return ServerSpec(name or spec.name, argv, "", check=check, describe=describe)


def served_build(pid: int, log: str) -> str:
    """What a running h2gate server says it is (its startup line), and the compiled library it has mapped."""
    said = next((line.split("] ", 1)[-1] for line in log.splitlines() if " serving " in line), "no startup line")
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return said
    shared = sorted({line.split()[-1] for line in maps.splitlines() if "/h2gate/_compiled__mypyc" in line})
    return f"{said}; maps {', '.join(shared) or 'no compiled h2gate library'}"


def is_wsgi(name: str) -> bool:
    return name.endswith("-wsgi")
