"""--metrics-bind: the real server's Prometheus endpoint, scraped over HTTP/1.1 and parsed with prometheus_client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2.errors import ErrorCodes
from prometheus_client.parser import text_string_to_metric_families

from h2gate.config import Config
from h2gate.net.negotiate import H2CUpgrade, WebSocketUpgrade
from h2gate.net.transport import CleartextTransport
from h2gate.observe import metrics
from tests.conftest import ROOT, h2c_client, tls_client
from tests.h2raw import PREFACE, RawH2, read_until_closed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with httpx.Client(http1=True, http2=False, timeout=10) as client:
        r = client.get(url)
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (whatever their other labels, e.g. ``worker``)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))


def scrape_until(url: str, check: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """Counters are updated when a stream's task ends, just after the client saw the response."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def metrics_url(server: Any) -> str:
    return server.wait_for_log(r"serving Prometheus metrics at (\S+)").split(" at ")[1].split()[0]


def test_metrics_endpoint_counts_traffic(serve: Any) -> None:
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    assert not url.endswith(f":{server.port}/metrics")
    with h2c_client() as client:
        for _ in range(3):
            assert client.get(f"{server.url}/").status_code == 200
        assert client.get(f"{server.url}/missing").status_code == 404
    with RawH2(server.port) as raw:
        sid = raw.request("GET", "/hang")
        raw.pump(0.2)
        raw.reset(sid, ErrorCodes.CANCEL)
        big = raw.get("/big?n=200000")  # more than the 65,535-byte default window: the server must wait
        assert (big.status, len(big.body)) == (200, 200_000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        read_until_closed(sock)  # DATA on stream 0: GOAWAY PROTOCOL_ERROR

    def done(s: Samples) -> bool:
        return value(s, "h2gate_streams_total") >= 6 and value(s, "h2gate_connections_open", transport="h2c") == 0

    s = scrape_until(url, done)
    assert value(s, "h2gate_connections_total", transport="h2c") == 3
    assert value(s, "h2gate_connections_open", transport="h2c") == 0
    assert value(s, "h2gate_streams_total") == 6
    assert value(s, "h2gate_streams_open") == 0
    assert value(s, "h2gate_requests_total", status_class="2xx") == 4
    assert value(s, "h2gate_requests_total", status_class="4xx") == 1
    assert value(s, "h2gate_requests_total", status_class="none") == 1  # the reset /hang
    assert value(s, "h2gate_stream_resets_total", side="client", code="CANCEL") == 1
    assert value(s, "h2gate_request_duration_seconds_count") == 6
    assert value(s, "h2gate_flow_control_stalls_total") >= 1
    assert value(s, "h2gate_goaways_sent_total", code="PROTOCOL_ERROR") == 1
    assert value(s, "h2gate_sent_bytes_total") > 200_000
    assert value(s, "h2gate_received_bytes_total") > len(PREFACE) * 3


def test_metrics_off_by_default(serve: Any) -> None:
    server = serve("apps.observe:app")
    with h2c_client() as client:
        assert client.get(f"{server.url}/").status_code == 200
    assert not any("Prometheus" in line for line in server.lines)


def test_metrics_bind_must_differ_from_app_bind(serve: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bind = f"127.0.0.1:{port}"
    server = serve("apps.observe:app", "-b", bind, "--metrics-bind", bind, bind=False, wait=False)
    assert server.proc.wait(20) == 1
    server.wait_for_log(f"h2gate: error: --metrics-bind {bind} is also an application --bind")


def test_missing_prometheus_client_is_a_startup_error(serve: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "prometheus_client"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0", env={"PYTHONPATH": path}, wait=False)
    assert server.proc.wait(20) == 1
    server.wait_for_log(r"h2gate: error: --metrics-bind needs prometheus_client: pip install 'h2gate\[metrics\]'")


def test_transport_kind() -> None:
    t = CleartextTransport(None, None, None)  # type: ignore[arg-type]
    assert metrics.transport_kind(t, None) == "h2c"
    assert metrics.transport_kind(t, H2CUpgrade(b"", [], b"")) == "h2c-upgrade"
    assert metrics.transport_kind(t, WebSocketUpgrade.__new__(WebSocketUpgrade)) == "websocket-http1"


WORKER = """
import sys
from h2gate.observe import metrics
from h2gate.config import Config
assert metrics.start(Config(app="x", metrics_bind="127.0.0.1:0")) is None  # a worker serves nothing
metrics.recorder.connection_opened("h2c")
metrics.recorder.request_done(200, 0.01)
metrics.recorder.request_done(503, 0.02)
"""


def test_multiprocess_workers_summed_by_the_supervisor() -> None:
    config = Config(app="x", metrics_bind="127.0.0.1:0")
    env = metrics.prepare_multiprocess(config)
    try:
        assert set(env) == {metrics.MULTIPROC_ENV, metrics.ROLE_ENV} and os.path.isdir(env[metrics.MULTIPROC_ENV])
        url = metrics.serve_supervisor_metrics(config)
        assert url is not None
        pids = []
        for _ in range(2):
            worker = subprocess.Popen([sys.executable, "-c", WORKER], env={**os.environ, **env}, cwd=ROOT)
            assert worker.wait(60) == 0
            pids.append(worker.pid)
        assert value(scrape(url), "h2gate_connections_open", transport="h2c") == 2  # as if still open
        for pid in pids:
            metrics.worker_exited(pid)
        metrics.count_worker_restart()
        s = scrape(url)
        assert value(s, "h2gate_connections_open", transport="h2c") == 0
        assert value(s, "h2gate_connections_total", transport="h2c") == 2
        assert value(s, "h2gate_requests_total", status_class="2xx") == 2
        assert value(s, "h2gate_requests_total", status_class="5xx") == 2
        assert value(s, "h2gate_request_duration_seconds_count") == 4
        assert value(s, "h2gate_worker_restarts_total") == 1
    finally:
        metrics.stop()
        metrics.cleanup_multiprocess()
    assert not os.path.exists(env[metrics.MULTIPROC_ENV])


def test_prepare_multiprocess_is_empty_with_metrics_off() -> None:
    assert metrics.prepare_multiprocess(Config(app="x")) == {}


@pytest.mark.parametrize("code", [ErrorCodes.CANCEL, 0x99])
def test_recorder_code_names(code: int) -> None:
    assert metrics._code_name(code) == (ErrorCodes(code).name if code in list(ErrorCodes) else str(code))


def test_workers_summed_on_the_supervisor_endpoint(serve: Any) -> None:
    from tests.procapps import worker_pids

    server = serve("apps.observe:app", "-w", "2", "--metrics-bind", "127.0.0.1:0", "--graceful-timeout", "5")
    url = metrics_url(server)
    with h2c_client() as client:
        for _ in range(6):
            assert client.get(f"{server.url}/").status_code == 200
        assert client.get(f"{server.url}/missing").status_code == 404
    s = scrape_until(url, lambda s: value(s, "h2gate_requests_total", status_class="2xx") == 6)
    assert value(s, "h2gate_requests_total", status_class="2xx") == 6
    assert value(s, "h2gate_requests_total", status_class="4xx") == 1
    assert value(s, "h2gate_worker_restarts_total") == 0
    pids = worker_pids(server)
    os.kill(pids[0], signal.SIGKILL)
    s = scrape_until(url, lambda s: value(s, "h2gate_worker_restarts_total") == 1)
    assert value(s, "h2gate_worker_restarts_total") == 1
    assert value(s, "h2gate_requests_total", status_class="2xx") == 6  # a dead worker's counts stay in the sum
    assert server.stop() == 0


def test_connection_labels(serve: Any, certs: Any) -> None:
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    upgrade = subprocess.run(
        ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}", f"{server.url}/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert upgrade.stdout == "2"  # HTTP/1.1 Upgrade: h2c, then HTTP/2
    with h2c_client() as client:
        assert client.get(f"{server.url}/").status_code == 200
    s = scrape_until(url, lambda s: value(s, "h2gate_requests_total", status_class="2xx") == 2)
    assert value(s, "h2gate_connections_total", transport="h2c-upgrade") == 1
    assert value(s, "h2gate_connections_total", transport="h2c") == 1
    tls = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0", tls=True)
    with tls_client(certs) as client:
        assert client.get(f"{tls.url}/").status_code == 200
    s = scrape_until(metrics_url(tls), lambda s: value(s, "h2gate_connections_open", transport="h2-tls") == 0)
    assert value(s, "h2gate_connections_total", transport="h2-tls") == 1


def test_server_resets_by_code(serve: Any) -> None:
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0", "--max-concurrent-streams", "1")
    url = metrics_url(server)
    with RawH2(server.port) as raw:
        # Both before the server's SETTINGS are read: h2 would not let the client open the second.
        first = raw.request("GET", "/hang")
        second = raw.request("GET", "/")
        refused = raw.response(second, until=lambda st: st.reset is not None)
        assert refused.reset == ErrorCodes.REFUSED_STREAM
        raw.reset(first, ErrorCodes.CANCEL)
        raw.pump(0.2)
    s = scrape_until(url, lambda s: value(s, "h2gate_streams_open") == 0 and value(s, "h2gate_streams_total") == 1)
    assert value(s, "h2gate_stream_resets_total", side="server", code="REFUSED_STREAM") == 1
    assert value(s, "h2gate_stream_resets_total", side="client", code="CANCEL") == 1


def test_single_process_has_process_metrics_build_info_and_zero_gauges(serve: Any) -> None:
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    s = scrape(url)
    # Before any traffic every labelled series is already there, at 0.
    for transport in metrics.TRANSPORTS:
        assert (("h2gate_connections_open", (("transport", transport), ("worker", "0")))) in s
        assert value(s, "h2gate_connections_open", transport=transport) == 0
    assert ("h2gate_connections_rejected_total", (("worker", "0"),)) in s
    assert value(s, "process_resident_memory_bytes") > 0
    assert value(s, "process_open_fds") > 0
    (build,) = [labels for (name, labels) in s if name == "h2gate_build_info"]
    assert dict(build)["version"] and dict(build)["h2"] and dict(build)["openssl"].startswith("OpenSSL")
    server.send_signal(signal.SIGHUP)
    server.signalled = False
    s = scrape_until(url, lambda s: value(s, "h2gate_reloads_total", result="ok") == 1)
    assert value(s, "h2gate_reloads_total", result="ok") == 1


def test_head_answers_with_the_exposition_content_type(serve: Any) -> None:
    server = serve("apps.observe:app", "--metrics-bind", "127.0.0.1:0")
    with httpx.Client(timeout=10) as client:
        get = client.get(metrics_url(server))
        head = client.head(metrics_url(server))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-type"].startswith("text/plain; version=")


def test_workers_are_labelled_and_gauges_survive_a_reload(serve: Any) -> None:
    from tests.procapps import wait_until, worker_pids

    server = serve("apps.observe:app", "-w", "2", "--metrics-bind", "127.0.0.1:0", "--graceful-timeout", "5")
    url = metrics_url(server)
    clients = [h2c_client() for _ in range(10)]
    try:
        for client in clients:
            assert client.get(f"{server.url}/").status_code == 200
        s = scrape_until(url, lambda s: value(s, "h2gate_requests_total", status_class="2xx") == 10)
        per_worker = {w: value(s, "h2gate_requests_total", status_class="2xx", worker=w) for w in ("0", "1")}
        assert sum(per_worker.values()) == 10 and all(per_worker.values()), per_worker  # both served, told apart
        assert value(s, "h2gate_connections_open", transport="h2c") == 10
    finally:
        for client in clients:
            client.close()
    assert value(s, "h2gate_workers") == 2
    for worker in ("supervisor", "0", "1"):
        assert value(s, "process_resident_memory_bytes", worker=worker) > 0, worker
        assert value(s, "process_cpu_seconds_total", worker=worker) > 0, worker
    old = worker_pids(server)
    server.send_signal(signal.SIGHUP)
    server.signalled = False
    server.wait_for_log("reload complete")
    wait_until(lambda: all(f"worker {pid} exited" in server.output for pid in old), what="the old workers to exit")
    s = scrape(url)
    # The old workers' series are gone with them; the new ones read 0 rather than vanishing.
    assert (("h2gate_connections_open", (("transport", "h2c"), ("worker", "0")))) in s
    assert value(s, "h2gate_connections_open", transport="h2c") == 0
    assert value(s, "h2gate_reloads_total", result="ok") == 1
    assert value(s, "h2gate_requests_total", status_class="2xx") == 10  # counters keep the old workers' counts
    server.send_signal(signal.SIGTTIN)
    server.signalled = False
    s = scrape_until(url, lambda s: value(s, "h2gate_workers") == 3)
    assert value(s, "h2gate_workers") == 3
    assert server.stop() == 0
