"""The ``h2gate`` command as a user meets it: startup errors, binds, TLS modes, --help/--version.

Every startup failure must end the process with one ``h2gate: error:`` line and
no traceback; an exception raised by the application's own code while it is
imported adds the frames of the app's own code below that line, and nothing else.

The failing runs are a table (``FAILURES``): a module fixture prepares the files
they need and starts them all at once on a thread pool (each ``python -m h2gate``
with a timeout), and one test per row checks its result. The runs that serve
use the ``serve`` fixture.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import h2gate
from h2gate.cli import main
from tests.conftest import TESTS, Certs, h2c_client

APP = "apps.basic:app"
TIMEOUT = 20


def run_h2gate(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = TESTS,
    module: str = "h2gate",
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` to completion, with no H2GATE_* variables but ``env``'s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listening_socket(family: int = socket.AF_INET, address: object = ("127.0.0.1", 0)) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen()
    return sock


# --- startup failures ---------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failing run. ``{name}`` in args, env values and fragments is filled from the prepared files."""

    args: tuple[str, ...]
    fragments: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    app_frames: bool = False  # the app's own exception: one line, then the app's frames only
    gone: str | None = None  # a path that must not exist afterwards


def _fail(*args: str, says: tuple[str, ...] | str, env: dict[str, str] | None = None, **kw: object) -> Failure:
    fragments = (says,) if isinstance(says, str) else says
    return Failure(tuple(args), fragments, tuple((env or {}).items()), **kw)  # type: ignore[arg-type]


FAILURES: dict[str, Failure] = {
    # the application
    "no-module": _fail("h2gate_test_no_such_module:app", says=("cannot import module", "no such module")),
    "no-attribute": _fail("apps.basic:nope", says="module 'apps.basic' has no attribute 'nope'"),
    "not-callable": _fail("apps.broken_attrs:not_callable", says="not callable (it is a int)"),
    "factory-needs-args": _fail(
        "apps.broken_attrs:needs_args", "--factory", says=("could not be called without arguments", "settings")
    ),
    "no-colon": _fail("apps.basic", says="must be given as MODULE:ATTRIBUTE"),
    "no-app": _fail(says="no application given"),
    "app-import-raises": _fail(
        "apps.broken:app",
        says=("cannot import 'apps.broken': RuntimeError", "fails at import on purpose", "broken.py"),
        app_frames=True,
    ),
    "app-import-missing-dependency": _fail(
        "apps.broken_import:app",
        says=("ModuleNotFoundError", "h2gate_test_no_such_dependency", "broken_import.py"),
        app_frames=True,
    ),
    "factory-raises": _fail(
        "apps.broken_attrs:factory_raises",
        "--factory",
        says=("factory apps.broken_attrs:factory_raises failed: TypeError: bug inside the factory", "broken_attrs.py"),
        app_frames=True,
    ),
    # binds
    "bind-nonsense": _fail(APP, "-b", "nonsense", says=("bad bind 'nonsense'", "expected HOST:PORT")),
    "bind-port-not-number": _fail(APP, "-b", "127.0.0.1:notaport", says="port 'notaport' is not a number"),
    "bind-port-too-big": _fail(APP, "-b", "127.0.0.1:70000", says="port must be 0-65535"),
    "bind-ipv6-no-colon": _fail(APP, "-b", "[::1]8000", says=("bad bind '[::1]8000'", "expected HOST:PORT")),
    "bind-fd-not-number": _fail(APP, "-b", "fd://x", says="fd:// needs a file descriptor number"),
    "bind-fd-closed": _fail(APP, "-b", "fd://987", says="cannot use fd://987"),
    "port-in-use": _fail(APP, "-b", "127.0.0.1:{port}", says="cannot bind 127.0.0.1:{port}: address already in use"),
    "port-in-use-on-second-bind": _fail(
        APP,
        "-b",
        "unix:{tmp}/first.sock",
        "-b",
        "127.0.0.1:{port}",
        says="cannot bind 127.0.0.1:{port}: address already in use",
        gone="{tmp}/first.sock",  # the first bind was cleaned up
    ),
    "unix-in-use": _fail(APP, "-b", "unix:{busy_sock}", says="cannot bind unix:{busy_sock}: address already in use"),
    "unix-path-is-a-file": _fail(APP, "-b", "unix:{regular}", says="exists and is not a socket"),
    # TLS
    "cert-missing": _fail(APP, "--certfile", "{tmp}/missing.pem", says="certificate file not found: {tmp}/missing.pem"),
    "key-missing": _fail(
        APP,
        "--certfile",
        "{cert}",
        "--keyfile",
        "{tmp}/missing-key.pem",
        says="key file not found: {tmp}/missing-key.pem",
    ),
    "cert-garbage": _fail(
        APP, "--certfile", "{garbage}", "--keyfile", "{key}", says="{garbage} does not contain a PEM certificate"
    ),
    "key-garbage": _fail(
        APP, "--certfile", "{cert}", "--keyfile", "{garbage}", says="{garbage} does not contain a PEM private key"
    ),
    "key-not-in-certfile": _fail(APP, "--certfile", "{cert}", says="{cert} does not contain a PEM private key"),
    "cert-key-mismatch": _fail(
        APP,
        "--certfile",
        "{cert}",
        "--keyfile",
        "{other_key}",
        says="key file {other_key} does not match the certificate in {cert}",
    ),
    "key-encrypted-no-password": _fail(
        APP,
        "--certfile",
        "{cert}",
        "--keyfile",
        "{encrypted_key}",
        says="key file {encrypted_key} is encrypted: pass --keyfile-password",
    ),
    "key-encrypted-wrong-password": _fail(
        APP,
        "--certfile",
        "{cert}",
        "--keyfile",
        "{encrypted_key}",
        "--keyfile-password",
        "wrong",
        says="wrong password for key file {encrypted_key}",
    ),
    "keyfile-without-certfile": _fail(APP, "--keyfile", "{key}", says="--keyfile needs --certfile"),
    "self-signed-and-certfile": _fail(APP, "--self-signed", "--certfile", "{cert}", says="mutually exclusive"),
    # config file (contents in CONFIG_FILES)
    "config-missing": _fail(APP, "--config", "{tmp}/missing.toml", says="config file {tmp}/missing.toml not found"),
    "config-invalid-toml": _fail(APP, "--config", "{invalid_toml}", says="{invalid_toml} is not valid TOML"),
    "config-unknown-key": _fail(
        APP, "--config", "{unknown_key}", says="config file {unknown_key}: unknown key 'no_such_option'"
    ),
    "config-wrong-type": _fail(
        APP,
        "--config",
        "{wrong_type}",
        says="config file {wrong_type}: key 'max_concurrent_streams': expected an integer, got str 'lots'",
    ),
    "config-below-minimum": _fail(
        APP, "--config", "{below_minimum}", says="key 'max_concurrent_streams': must be at least 1, got 0"
    ),
    # environment
    "env-int": _fail(
        APP,
        env={"H2GATE_MAX_CONCURRENT_STREAMS": "abc"},
        says="environment variable H2GATE_MAX_CONCURRENT_STREAMS: expected an integer, got 'abc'",
    ),
    "env-bind": _fail(APP, env={"H2GATE_BIND": "127.0.0.1:1,nonsense"}, says="bad bind 'nonsense'"),
    # flags (click's usage errors too)
    "flag-type": _fail(
        APP, "--max-concurrent-streams", "lots", says=("'--max-concurrent-streams'", "'lots' is not a valid integer")
    ),
    "flag-unknown": _fail(APP, "--no-such-flag", says="no such option --no-such-flag"),
}

CONFIG_FILES = {
    "invalid_toml": "max_concurrent_streams = [",
    "unknown_key": "no_such_option = 1",
    "wrong_type": 'max_concurrent_streams = "lots"',
    "below_minimum": "max_concurrent_streams = 0",
}


@pytest.fixture(scope="module")
def failure_files(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The files (and a taken port) the failing runs refer to, by placeholder name."""
    tmp = tmp_path_factory.mktemp("cli")
    other = certs.ca.issue_cert("other.example")
    other.private_key_pem.write_to_path(str(tmp / "other-key.pem"))
    key = serialization.load_pem_private_key(Path(certs.key_pem).read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right-password"),
    )
    (tmp / "encrypted-key.pem").write_bytes(encrypted)
    (tmp / "garbage.pem").write_text("this is neither a certificate nor a key\n")
    (tmp / "regular").write_text("keep me")
    values = {
        "tmp": str(tmp),
        "cert": certs.cert_pem,
        "key": certs.key_pem,
        "other_key": str(tmp / "other-key.pem"),
        "encrypted_key": str(tmp / "encrypted-key.pem"),
        "garbage": str(tmp / "garbage.pem"),
        "regular": str(tmp / "regular"),
        "busy_sock": str(tmp / "busy.sock"),
    }
    for name, content in CONFIG_FILES.items():
        (tmp / f"{name}.toml").write_text(content + "\n")
        values[name] = str(tmp / f"{name}.toml")
    with listening_socket() as taken, listening_socket(socket.AF_UNIX, values["busy_sock"]):
        values["port"] = str(taken.getsockname()[1])
        yield values


class FailureRuns:
    """The runs of FAILURES rows, started in the background; ``result(name)`` waits for one."""

    def __init__(self, pool: ThreadPoolExecutor, files: dict[str, str]) -> None:
        self.pool = pool
        self.files = files
        self.futures: dict[str, Future[subprocess.CompletedProcess[str]]] = {}

    def start(self, name: str) -> None:
        if name not in self.futures:
            case = FAILURES[name]
            args = [arg.format(**self.files) for arg in case.args]
            env = {k: v.format(**self.files) for k, v in case.env}
            self.futures[name] = self.pool.submit(run_h2gate, *args, env=env)

    def result(self, name: str) -> subprocess.CompletedProcess[str]:
        self.start(name)
        return self.futures[name].result()


@pytest.fixture(scope="module")
def failure_runs(request: pytest.FixtureRequest, failure_files: dict[str, str]) -> Iterator[FailureRuns]:
    """Starts the rows of every selected ``test_startup_failure`` at once, so they run in parallel."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = FailureRuns(pool, failure_files)
        for item in request.session.items:
            callspec = getattr(item, "callspec", None)
            if getattr(item, "originalname", None) == "test_startup_failure" and callspec is not None:
                runs.start(callspec.params["name"])
        yield runs


@pytest.mark.parametrize("name", FAILURES)
def test_startup_failure(
    name: str,
    failure_runs: FailureRuns,
    failure_files: dict[str, str],
) -> None:
    case = FAILURES[name]
    result = failure_runs.result(name)
    fragments = [fragment.format(**failure_files) for fragment in case.fragments]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    if case.app_frames:
        first, *frames = result.stderr.splitlines()
        assert first.startswith("h2gate: error: "), result.stderr
        for fragment in fragments:
            assert fragment in result.stderr, result.stderr
        assert frames and frames[0].startswith('  File "'), result.stderr
        for line in frames:  # only the app's own code: tests/apps, never importlib, h2gate or click
            assert not line.startswith("  File ") or f"{os.sep}tests{os.sep}apps{os.sep}" in line, line
    else:
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("h2gate: error: "), lines[0]
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
    if case.gone:
        assert not os.path.exists(case.gone.format(**failure_files))


def test_failed_unix_bind_leaves_a_regular_file_alone(failure_runs: FailureRuns, failure_files: dict[str, str]) -> None:
    assert failure_runs.result("unix-path-is-a-file").returncode != 0
    assert Path(failure_files["regular"]).read_text() == "keep me"


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("h2gate: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--max-concurrent-streams", "0"], "--max-concurrent-streams: must be at least 1, got 0"),
        (["--graceful-timeout", "-1"], "--graceful-timeout: must be at least 0"),
        (["--graceful-timeout", "nan"], "--graceful-timeout: expected a number, got nan"),
        (["--log-level", "loud"], "'loud' is not one of 'critical'"),
        (["--bind"], "Option '--bind' requires an argument"),
        (["surplus"], "unexpected extra argument (surplus)"),
    ],
)
def test_flag_errors_in_process(args: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Flag mistakes fail before anything is imported or bound, so they can run in-process.
    for name in list(os.environ):
        if name.startswith("H2GATE_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(main, [APP, *args], prog_name="h2gate")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert fragment in _one_error_line(result.stderr)


# --- --version and --help -------------------------------------------------------------


def test_version() -> None:
    result = run_h2gate("--version")
    assert result.returncode == 0
    # The server imports the h2gate this test does (the checkout, or the compiled wheel in tests/run.sh's run).
    assert result.stdout == f"h2gate 0.1.0 ({h2gate.build()})\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    result = run_h2gate(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: h2gate [OPTIONS] [APP]")
    assert "h2c" in result.stdout
    assert "--self-signed" in result.stdout


# --- serving ---------------------------------------------------------------------------


def test_cleartext_startup_says_h2c_and_that_browsers_need_tls(serve: object) -> None:
    server = serve(APP)
    assert server.url.startswith("http://127.0.0.1:")
    line = server.wait_for_log("listening on")
    assert "cleartext HTTP/2" in line and "h2c" in line
    assert "browsers only speak HTTP/2 over TLS" in line
    assert "--self-signed" in line


def test_app_from_environment_and_app_dir(tmp_path: Path, serve: object) -> None:
    # APP through H2GATE_APP, found through --app-dir rather than the working directory.
    (tmp_path / "h2gate_test_elsewhere.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'elsewhere'})\n"
    )
    server = serve("--app-dir", str(tmp_path), "--lifespan", "off", env={"H2GATE_APP": "h2gate_test_elsewhere:app"})
    with h2c_client() as client:
        assert client.get(server.url).text == "elsewhere"


def test_unix_bind_serves_and_removes_its_socket(serve: object, tmp_path: Path) -> None:
    path = tmp_path / "h2gate.sock"
    # A stale socket file from an earlier run (nobody listening) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = serve(APP, "-b", f"unix:{path}", bind=False)
    assert server.url == f"unix:{path}"
    transport = httpx.HTTPTransport(uds=str(path), http1=False, http2=True)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        r = client.get("http://localhost/")
    assert (r.http_version, r.status_code, r.text) == ("HTTP/2", 200, "hello")
    assert path.exists()
    assert server.stop() == 0
    assert not path.exists()


def test_ipv6_loopback_bind(serve: object) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = serve(APP, "-b", "[::1]:0", bind=False)
    assert server.url.startswith("http://[::1]:")
    with h2c_client() as client:
        r = client.get(server.url)
    assert (r.http_version, r.text) == ("HTTP/2", "hello")


def _pass_fds(monkeypatch: pytest.MonkeyPatch, *fds: int) -> None:
    """Make the ``serve`` fixture's subprocess inherit ``fds``."""
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, pass_fds=fds))


def test_fd_bind_serves(serve: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        _pass_fds(monkeypatch, sock.fileno())
        server = serve(APP, "-b", f"fd://{sock.fileno()}", bind=False)
    assert server.url == f"http://127.0.0.1:{port}"
    with h2c_client() as client:
        r = client.get(server.url)
    assert (r.http_version, r.text) == ("HTTP/2", "hello")
    assert server.stop() == 0


def test_fd_bind_leaves_a_passed_unix_socket_file(
    serve: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "activated.sock"
    with listening_socket(socket.AF_UNIX, str(path)) as sock:
        _pass_fds(monkeypatch, sock.fileno())
        server = serve(APP, "-b", f"fd://{sock.fileno()}", bind=False)
        transport = httpx.HTTPTransport(uds=str(path), http1=False, http2=True)
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            assert client.get("http://localhost/").text == "hello"
        assert server.stop() == 0
        # The path belongs to whoever handed the socket over (e.g. systemd).
        assert path.exists()


def test_several_binds_at_once(serve: object, tmp_path: Path) -> None:
    path = tmp_path / "many.sock"
    server = serve(APP, "-b", "127.0.0.1:0", "--bind", f"unix:{path}", "-b", "127.0.0.1:0", bind=False, wait=False)
    server.wait_ready(count=3)
    tcp = [u for u in server.urls if u.startswith("http://")]
    assert len(tcp) == 2 and len(set(tcp)) == 2
    assert f"unix:{path}" in server.urls
    with h2c_client() as client:
        for url in tcp:
            assert client.get(url).text == "hello"
    transport = httpx.HTTPTransport(uds=str(path), http1=False, http2=True)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        assert client.get("http://localhost/").text == "hello"
    assert server.stop() == 0
    assert not path.exists()


def test_self_signed_warns_and_serves_tls(serve: object) -> None:
    server = serve(APP, "--self-signed")
    assert server.url.startswith("https://127.0.0.1:")
    warning = server.wait_for_log(r"\[WARNING\].*SELF-SIGNED")
    m = re.search(r"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", warning)
    assert m, warning
    assert "never use --self-signed in production" in warning
    # The fingerprint logged is the one of the certificate actually served.
    pem = ssl.get_server_certificate(("127.0.0.1", server.port))
    served = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex(":").upper()
    assert m.group(1) == served
    with httpx.Client(http2=True, verify=False, timeout=TIMEOUT) as client:
        r = client.get(server.url + "/scope")
    assert r.http_version == "HTTP/2"
    assert r.json()["scheme"] == "https"
    # Nobody trusts the throwaway certificate: hence the warning.
    with httpx.Client(http2=True, timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.get(server.url)


def test_encrypted_key_with_password_from_env_serves(
    serve: object, certs: Certs, failure_files: dict[str, str]
) -> None:
    server = serve(
        APP,
        "--certfile",
        certs.cert_pem,
        "--keyfile",
        failure_files["encrypted_key"],
        env={"H2GATE_KEYFILE_PASSWORD": "right-password"},
    )
    assert server.url.startswith("https://")
    verify = ssl.create_default_context(cafile=certs.ca_pem)
    with httpx.Client(http2=True, verify=verify, timeout=TIMEOUT) as client:
        r = client.get(server.url.replace("127.0.0.1", "localhost"))
    assert (r.http_version, r.text) == ("HTTP/2", "hello")
