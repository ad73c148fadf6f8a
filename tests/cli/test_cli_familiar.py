"""The command as someone used to Uvicorn, Gunicorn, Hypercorn, Granian or h2corn meets it.

Their spellings are aliases (checked through ``--print-config``, which shows what each flag set and where
it came from) or answered with one line naming the h2gate option; every usage error exits 2;
``--print-config`` writes a file ``--config`` reads back; ``--check-config`` checks without serving.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from h2gate.cli import main
from tests.conftest import TESTS, Certs, ServerProcess, h2c_client

APP = "apps.basic:app"


@pytest.fixture(autouse=True)
def _no_h2gate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("H2GATE_"):
            monkeypatch.delenv(name)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), prog_name="h2gate", env=env)
    return result.exit_code, result.stdout, result.stderr


def printed(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """``--print-config``'s lines as key -> 'value  # origin' (commented-out ones included)."""
    code, out, err = invoke(*args, "--print-config", env=env)
    assert code == 0, err
    lines = {}
    for line in out.splitlines():
        line = line.removeprefix("# ")
        key, sep, rest = line.partition(" = ")
        if sep:
            lines[key] = rest
    return lines


@pytest.mark.parametrize(
    ("args", "key", "shown"),
    [
        (["--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"], "certfile", '"c.pem"  # command line'),  # Uvicorn
        (["--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"], "keyfile", '"k.pem"  # command line'),
        (["--ssl-certificate=c.pem"], "certfile", '"c.pem"  # command line'),  # Granian, with =
        (["--timeout-keep-alive", "7"], "keep_alive_timeout", "7.0  # command line"),  # Uvicorn, h2corn
        (["--keep-alive", "7"], "keep_alive_timeout", "7.0  # command line"),  # Gunicorn, Hypercorn
        (["--access-logformat", "%(h)s %(r)s"], "access_log_format", '"%(h)s %(r)s"  # command line'),
        (["--timeout-graceful-shutdown", "3"], "graceful_timeout", "3.0  # command line"),
        (["--limit-max-requests", "5"], "max_requests", "5  # command line"),
        (["--http2-max-concurrent-streams", "50"], "max_concurrent_streams", "50  # command line"),
        (["--url-path-prefix", "/api"], "root_path", '"/api"  # command line'),
        (["--cert-reqs", "optional", "--ca-certs", "ca.pem", "--certfile", "c"], "verify_client", '"optional"  #'),
        (["--host", "0.0.0.0", "--port", "9000"], "bind", '["0.0.0.0:9000"]  # command line'),
        (["--port", "9001"], "bind", '["127.0.0.1:9001"]  # command line'),
        (["--host", "::1"], "bind", '["[::1]:8000"]  # command line'),
        (["--uds", "/run/app.sock"], "bind", '["unix:/run/app.sock"]  # command line'),
        (["--fd", "3"], "bind", '["fd://3"]  # command line'),
        (["--no-access-log"], "access_log", "false  # command line"),
    ],
)
def test_other_servers_spellings_are_aliases(args: list[str], key: str, shown: str) -> None:
    assert printed(APP, *args)[key].startswith(shown)


def test_demo_names_the_bundled_example() -> None:
    assert printed("--demo")["app"] == '"h2gate.examples.hello:app"  # command line'


def test_config_alias_c_reads_the_file(tmp_path: Path) -> None:
    (tmp_path / "h2gate.toml").write_text("workers = 3\n")
    assert printed(APP, "-c", str(tmp_path / "h2gate.toml"))["workers"] == f"3  # config file {tmp_path}/h2gate.toml"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--ssl-cert-reqs", "2"],
            "no such option --ssl-cert-reqs (Uvicorn): the closest h2gate option is --verify-client",
        ),
        (
            ["--verify-mode", "2"],
            "no such option --verify-mode (Hypercorn): the closest h2gate option is --verify-client",
        ),
        (
            ["--limit-concurrency", "9"],
            "no such option --limit-concurrency (Uvicorn): the closest h2gate option is --max-connections",
        ),
        (["--timeout", "30"], "no such option --timeout: Gunicorn's worker timeout: h2gate has none"),
        (["-p", "80"], "-p is --pid in Gunicorn and Hypercorn but --port in h2corn"),
        (["-k", "uvicorn.workers.UvicornWorker"], "for trio apps use --loop trio"),
        (["--cretfile", "x"], "no such option --cretfile: did you mean --certfile?"),
        (["--ssl-cert", "x"], "no such option --ssl-cert: did you mean --certfile?"),
        (["--max-stream", "x"], "did you mean --max-concurrent-streams?"),
    ],
)
def test_near_misses_name_the_h2gate_option(args: list[str], line: str) -> None:
    code, out, err = invoke(APP, *args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith("h2gate: error: ") and line in err, err


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["-w", "0"], None, "--workers: must be at least 1, got 0"),
        (["-w", "abc"], None, "'abc' is not a valid integer"),
        (["--max-concurrent-streams", "0"], None, "must be at least 1"),
        (["--log-level", "loud"], None, "'loud' is not one of"),
        (["--bind"], None, "requires an argument"),
        (["surplus"], None, "unexpected extra argument"),
        (["-b", "nonsense"], None, "bad bind 'nonsense'"),
        (["--keyfile", "k.pem"], None, "--keyfile needs --certfile"),
        (["--access-log-format", "%(nope)s"], None, "unknown atom %(nope)s"),
        (["--host", "::1", "--bind", "127.0.0.1:1"], None, "--host/--port/--uds/--fd and --bind"),
        (["--port", "70000"], None, "70000 is not in the range"),
        (["--demo"], None, "--demo serves h2gate.examples.hello:app: leave out apps.basic:app"),
        ([], {"H2GATE_WORKERS": "zero"}, "environment variable H2GATE_WORKERS: expected an integer"),
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str] | None, fragment: str) -> None:
    code, out, err = invoke(APP, *args, env=env)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("h2gate: error: ") and fragment in err, err


def test_no_app_is_a_usage_error() -> None:
    code, _, err = invoke()
    assert code == 2 and "no application given" in err and "h2gate.examples.hello:app" in err


def test_config_file_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("workers = 0\n")
    code, _, err = invoke(APP, "--config", str(tmp_path / "bad.toml"))
    assert code == 2 and "key 'workers': must be at least 1, got 0" in err


def test_print_config_says_where_each_value_came_from_and_reads_back(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('log_level = "debug"\nthreads = 4\nkeyfile_password = "secret"\n')
    env = {"H2GATE_THREADS": "6", "H2GATE_LOOP": "trio"}
    code, out, err = invoke(APP, "--config", str(tmp_path / "base.toml"), "-w", "2", "--print-config", env=env)
    assert code == 0, err
    assert f'log_level = "debug"  # config file {tmp_path}/base.toml' in out
    assert "threads = 6  # environment H2GATE_THREADS" in out  # the environment wins over the file
    assert 'loop = "trio"  # environment H2GATE_LOOP' in out
    assert "workers = 2  # command line" in out
    assert "max_concurrent_streams = 100  # default" in out
    assert "# certfile = (not set)  # default" in out
    assert "secret" not in out and "# keyfile_password = (set, not shown)" in out
    assert "# --- TLS ---" in out and "# --- Workers and reload ---" in out
    data = tomllib.loads(out)
    assert data["app"] == APP and data["threads"] == 6 and data["bind"] == ["127.0.0.1:8000"]
    # The dump is a config file: read back, it resolves to the same values (now from that file).
    (tmp_path / "dumped.toml").write_text(out)
    code, again, err = invoke("--config", str(tmp_path / "dumped.toml"), "--print-config")
    assert code == 0, err
    assert tomllib.loads(again) == data
    assert f"workers = 2  # config file {tmp_path}/dumped.toml" in again


def test_check_config_passes_without_binding(certs: Certs) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem, "-b", f"127.0.0.1:{port}"]
        result = run("apps.basic:app", *args, "--check-config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "h2gate: app apps.basic:app: ASGI (app loop: asyncio)"
    assert lines[1].startswith("h2gate: TLS: certificate ") and "TLS >= 1.2" in lines[1]
    assert lines[2].startswith("h2gate: HTTP/2 codec: h2 ") or lines[2].startswith("h2gate: HTTP/2 codec: ngh2 ")
    assert lines[3] == f"h2gate: binds: 127.0.0.1:{port} (not bound by --check-config)"
    assert lines[-1] == "h2gate: configuration OK"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["apps.basic:app", "--certfile", "/nonexistent/cert.pem"], 1, "certificate file not found"),
        (["apps.broken:app"], 1, "cannot import 'apps.broken': RuntimeError"),
        (["apps.basic:nope"], 1, "has no attribute 'nope'"),
        (["apps.basic:app", "-w", "0"], 2, "--workers: must be at least 1"),
        ([], 2, "no application given"),
    ],
)
def test_check_config_failures(args: list[str], code: int, fragment: str) -> None:
    result = run(*args, "--check-config")
    assert result.returncode == code, result
    assert result.stderr.startswith("h2gate: error: ") and fragment in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr and "configuration OK" not in result.stdout


def test_host_and_port_serve_one_bind() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ServerProcess(["apps.basic:app", "--host", "127.0.0.1", "--port", str(port)]).wait_ready()
    try:
        assert server.urls == [f"http://127.0.0.1:{port}"]
        with h2c_client() as client:
            assert client.get(f"{server.url}/").status_code == 200
    finally:
        assert server.stop() == 0


def test_demo_serves_the_bundled_example() -> None:
    server = ServerProcess(["--demo", "-b", "127.0.0.1:0"], cwd=Path("/")).wait_ready()
    try:
        with h2c_client() as client:
            assert client.get(f"{server.url}/x").text.startswith("Hello from h2gate over HTTP/2! You asked for /x")
    finally:
        assert server.stop() == 0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    return subprocess.run(
        [sys.executable, "-m", "h2gate", *args], cwd=TESTS, env=env, capture_output=True, text=True, timeout=30
    )
