"""conf/kubernetes.yaml, conf/envoy.yaml and conf/nginx.conf: valid files that only name options h2gate has.

The Kubernetes probes are run for real against a server configured with the
manifest's own environment; nginx (when installed) is started with the
example config, addresses swapped for loopback ones, in front of a real h2gate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from h2gate.config import ENV_PREFIX, describe_type, field_type, fields, load_config
from tests.conftest import ROOT, Certs, ServerProcess

Serve = Callable[..., ServerProcess]
CONF = ROOT / "conf"
EXAMPLES = ("kubernetes.yaml", "envoy.yaml", "nginx.conf", "haproxy.cfg")
HEALTHCHECK = ["python", "-m", "h2gate.healthcheck"]


def h2gate_flags() -> set[str]:
    """Every command-line spelling the h2gate CLI accepts, derived from the options table."""
    flags = {"--help", "-h", "--version"}
    for f in fields():
        if not f.metadata["cli"]:
            continue
        long = "--" + f.name.replace("_", "-")
        flags.update(f.metadata["flags"] or (long,))
        if describe_type(field_type(f))[0] is bool:
            flags.update({long, "--no-" + long[2:]})
    return flags


def kubernetes_docs() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((CONF / "kubernetes.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def probe_commands(container: dict[str, Any]) -> list[list[str]]:
    return [container[p]["exec"]["command"] for p in ("readinessProbe", "livenessProbe") if "exec" in container[p]]


def dockerfile_user() -> str:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert users, "the Dockerfile sets no USER"
    return users[-1]


@pytest.mark.parametrize("name", EXAMPLES)
def test_only_existing_options_are_named(name: str) -> None:
    text = (CONF / name).read_text()
    known_env = {ENV_PREFIX + f.name.upper() for f in fields()}
    named_env = set(re.findall(r"\bH2GATE_[A-Z0-9_]+", text))
    assert named_env - known_env == set()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    if name == "kubernetes.yaml":
        # The probes' own flags: checked by running the probes below.
        (container,) = kubernetes_docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
        flags -= {arg for command in probe_commands(container) for arg in command}
    assert flags - h2gate_flags() == set()


@pytest.mark.parametrize("name", ["kubernetes.yaml", "envoy.yaml"])
def test_yaml_parses(name: str) -> None:
    docs = [d for d in yaml.safe_load_all((CONF / name).read_text()) if d]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_kubernetes_manifest_fits_h2gate() -> None:
    docs = kubernetes_docs()
    assert set(docs) == {"Deployment", "Service"}
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["containers"]
    config = load_config(environ=container_env(container))  # raises on a bad value

    # Non-root, and the same numeric user the image declares (runAsNonRoot needs a number).
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == dockerfile_user()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    # Probes: no httpGet (kubelet speaks HTTP/1.1, h2gate answers 505).
    for name in ("readinessProbe", "livenessProbe"):
        probe = container[name]
        assert "httpGet" not in probe, name
        if "exec" in probe:
            command = probe["exec"]["command"]
            assert command[:3] == HEALTHCHECK, name
            timeout = float(command[command.index("--timeout") + 1])
            assert timeout < probe["timeoutSeconds"], f"{name}: the probe must give up before the kubelet does"
        else:
            assert "tcpSocket" in probe, name

    # Shutdown: endpoints removed (preStop) + drain must fit in the grace period.
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + config.graceful_timeout

    # Ports: the container port is the bind port, and the Service speaks h2c to it.
    (bind,) = config.bind
    (port,) = container["ports"]
    assert port["containerPort"] == int(bind.rsplit(":", 1)[1])
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    assert service_port["appProtocol"] == "kubernetes.io/h2c"


def test_kubernetes_probes_pass_against_a_server_with_the_manifest_env(serve: Serve) -> None:
    (container,) = kubernetes_docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = container_env(container)
    env.pop("H2GATE_APP")
    server = serve(
        "apps.basic:app", env={k: v for k, v in env.items() if k not in ("H2GATE_BIND", "H2GATE_FORWARDED_ALLOW_IPS")}
    )
    env["H2GATE_BIND"] = f"0.0.0.0:{server.port}"  # what the pod has, on a free port
    commands = probe_commands(container)
    assert commands, "no exec probes to run"
    for command in commands:
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_envoy_speaks_h2c_to_the_cluster_it_routes_to() -> None:
    config = yaml.safe_load((CONF / "envoy.yaml").read_text())
    resources = config["static_resources"]
    clusters = {c["name"]: c for c in resources["clusters"]}
    (listener,) = resources["listeners"]
    (hcm,) = listener["filter_chains"][0]["filters"]
    assert hcm["typed_config"]["@type"].endswith("http_connection_manager.v3.HttpConnectionManager")
    routes = [r for vh in hcm["typed_config"]["route_config"]["virtual_hosts"] for r in vh["routes"]]
    assert routes and {r["route"]["cluster"] for r in routes} <= set(clusters)
    defaults = load_config(environ={})
    for cluster in clusters.values():
        key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        options = cluster["typed_extension_protocol_options"][key]
        assert options["@type"] == "type.googleapis.com/" + key
        h2 = options["explicit_http_config"]["http2_protocol_options"]
        assert h2["max_concurrent_streams"] == defaults.max_concurrent_streams
        idle = options["common_http_protocol_options"]["idle_timeout"]
        assert float(idle.rstrip("s")) < defaults.keep_alive_timeout
        for check in cluster.get("health_checks", []):
            assert check["http_health_check"]["codec_client_type"] == "HTTP2"
        ports = {
            e["endpoint"]["address"]["socket_address"]["port_value"]
            for group in cluster["load_assignment"]["endpoints"]
            for e in group["lb_endpoints"]
        }
        assert ports == {8000}  # the image's EXPOSE and H2GATE_BIND
    if shutil.which("envoy"):
        result = subprocess.run(
            ["envoy", "--mode", "validate", "-c", str(CONF / "envoy.yaml")], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_example_uses_the_grpc_module_for_http2_upstreams() -> None:
    text = (CONF / "nginx.conf").read_text()
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "grpc_pass grpc://h2gate;" in directives
    assert not [d for d in directives if d.startswith("proxy_pass")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localized_nginx_conf(h2gate_port: int, nginx_port: int, certs: Certs, tmp: Path) -> str:
    """conf/nginx.conf with its deployment-specific names swapped for loopback ones (each exactly once)."""
    text = (CONF / "nginx.conf").read_text()
    assert text.count("server h2gate:8000 ") == 2, "conf/nginx.conf no longer lists h2gate twice: update this test"
    text = text.replace("server h2gate:8000 ", f"server 127.0.0.1:{h2gate_port} ")
    swaps = {
        "listen 443 ssl http2;": f"listen 127.0.0.1:{nginx_port} ssl http2;",
        "/etc/nginx/tls/fullchain.pem": certs.cert_pem,
        "/etc/nginx/tls/privkey.pem": certs.key_pem,
        "/var/log/nginx/h2gate.access.log": str(tmp / "access.log"),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"conf/nginx.conf no longer has exactly one {old!r}: update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx_in_front(serve: Serve, certs: Certs, tmp_path: Path) -> Iterator[tuple[str, ServerProcess]]:
    """nginx running conf/nginx.conf on a loopback port, proxying to a real h2gate."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    if os.geteuid() != 0:
        pytest.skip("nginx's compiled-in temp directories (/var/lib/nginx) need root")
    server = serve("apps.basic:app", env={"H2GATE_PROXY_HEADERS": "true", "H2GATE_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(localized_nginx_conf(server.port, port, certs, tmp_path))
    base = ["nginx", "-c", str(conf), "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log")]
    main_directives = f"pid {tmp_path}/nginx.pid; daemon off;"
    check = subprocess.run([*base, "-t", "-g", main_directives], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([*base, "-g", main_directives], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.1)
        yield f"https://127.0.0.1:{port}", server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.parametrize("client_http2", [True, False], ids=["client-h2", "client-http1.1"])
def test_nginx_example_proxies_over_http2(
    nginx_in_front: tuple[str, ServerProcess], certs: Certs, client_http2: bool
) -> None:
    url, server = nginx_in_front
    with httpx.Client(http2=client_http2, verify=certs.ca_pem, timeout=30) as client:
        response = client.get(url + "/scope")
        assert response.status_code == 200, response.text
        assert response.http_version == ("HTTP/2" if client_http2 else "HTTP/1.1")
        scope = response.json()
        body = os.urandom(200_000)
        echoed = client.post(url + "/echo", content=body)
    assert scope["http_version"] == "2"  # nginx -> h2gate was HTTP/2, whatever the client spoke
    headers = dict(scope["headers"])
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["host"] == "127.0.0.1"  # the client's host name, not the upstream's "h2gate"
    # With H2GATE_PROXY_HEADERS (as the file suggests) the app sees nginx's client and scheme.
    assert scope["scheme"] == "https"
    assert scope["client"][0] == "127.0.0.1"
    assert echoed.status_code == 200 and echoed.content == body
    server.wait_for_log(r'"POST /echo HTTP/2" 200')
