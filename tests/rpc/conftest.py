"""The gRPC matrix's servers: the Probe service on ASGI asyncio, ASGI trio and WSGI, over h2c and TLS.

The Python code for probe.proto is generated once per session (see codegen.py
for why it is not committed). Servers are real ``python -m h2gate`` processes,
one per (app kind, transport), started once per test module and checked at
teardown: a clean exit and no traceback in their logs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Certs, ServerProcess
from tests.rpc.codegen import HERE, generate

grpc = pytest.importorskip("grpc", reason="the gRPC tests need grpcio (pip install -e '.[test]')")
pytest.importorskip("connectrpc", reason="the gRPC tests need connectrpc (pip install -e '.[test]')")

KINDS = {
    "asgi-asyncio": ["rpc.service:asgi_app", "--loop", "asyncio"],
    "asgi-trio": ["rpc.service:asgi_app", "--loop", "trio"],
    # A streaming RPC holds a WSGI thread for its whole life: room for the parallel-stream cases.
    "wsgi": ["rpc.service:wsgi_app", "--threads", "64"],
}
TRANSPORTS = ("h2c", "tls")
COMBOS = [f"{kind}/{transport}" for kind in KINDS for transport in TRANSPORTS]
#: Client message size limits: grpcio refuses messages over 4 MiB by default.
BIG = 16 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


@pytest.fixture(scope="session")
def probegen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = generate(HERE / "probe.proto", tmp_path_factory.mktemp("probegen"), "probegen")
    sys.path.insert(0, str(dest))
    return dest


@dataclass
class Target:
    """One running server and how a grpcio client reaches it."""

    combo: str
    server: ServerProcess
    ca_pem: bytes | None

    @property
    def port(self) -> int:
        return self.server.port

    def channel(self, port: int | None = None, options: list[tuple[str, object]] | None = None) -> grpc.Channel:
        """A new grpcio channel to the server (or to ``port``, a relay in front of it)."""
        address = f"localhost:{port or self.port}"
        opts = CHANNEL_OPTIONS + (options or [])
        if self.ca_pem is None:
            return grpc.insecure_channel(address, options=opts)
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=self.ca_pem), options=opts)


def start_server(combo: str, certs: Certs, probegen: Path, *flags: str) -> Target:
    kind, transport = combo.split("/")
    args = [*KINDS[kind], "-b", "127.0.0.1:0", *flags]
    ca = None
    if transport == "tls":
        args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
        ca = Path(certs.ca_pem).read_bytes()
    env = {"PYTHONPATH": os.pathsep.join([str(probegen), os.environ.get("PYTHONPATH", "")])}
    return Target(combo, ServerProcess(args, env), ca)


def tracebacks(output: str) -> list[str]:
    """Tracebacks in a server's log, less connectrpc's own report of a client that went away.

    connectrpc's WSGI app writes any exception of a handler that is not a
    ConnectError to wsgi.errors, so a handler ended by h2gate's
    ClientDisconnected (the client cancelled) shows up as "Exception in WSGI
    application": connectrpc's choice, not an h2gate error.
    """
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d |Exception in WSGI application)", output)
    return [
        b
        for b in blocks
        if "Traceback" in b and not (b.startswith("Exception in WSGI application") and "ClientDisconnected" in b)
    ]


def check_clean_exit(target: Target) -> None:
    code = target.server.stop()
    assert code == 0, target.server.output
    assert tracebacks(target.server.output) == [], target.server.output


@pytest.fixture(scope="module")
def targets(certs: Certs, probegen: Path) -> Iterator[dict[str, Target]]:
    """Every combination's server, started together (each start takes about a second)."""
    started = {combo: start_server(combo, certs, probegen) for combo in COMBOS}
    try:
        for target in started.values():
            target.server.wait_ready()
        yield started
    finally:
        codes = {combo: target.server.stop() for combo, target in started.items()}  # every one, then check
    for combo, target in started.items():
        assert codes[combo] == 0, target.server.output
        assert tracebacks(target.server.output) == [], target.server.output


@pytest.fixture(params=COMBOS)
def target(request: pytest.FixtureRequest, targets: dict[str, Target]) -> Target:
    return targets[request.param]


@pytest.fixture
def pb(probegen: Path) -> object:
    """The generated messages and grpcio stubs: ``pb.Msg``, ``pb.ProbeStub``."""
    import probegen.probe_pb2 as messages  # type: ignore[import-not-found]
    import probegen.probe_pb2_grpc as stubs  # type: ignore[import-not-found]

    class _Gen:
        Msg = messages.Msg
        ProbeStub = stubs.ProbeStub

    return _Gen
