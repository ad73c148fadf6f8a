"""Fixtures and checks shared by the attack tests: a server per test, its memory, a bystander client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conformance.frames import Peer
from tests.conftest import Certs, ServerProcess
from tests.h2raw import RawH2

#: How much the server's resident memory may grow during one attack, in MiB. An unbounded
#: queue fed by any of these floods would pass it within the attack's volume (tens of MB).
MEMORY_BOUND_MB = 40
#: The loop the attacked servers run: trio by default; CI runs the suite again with asyncio (the
#: default users get), where an HTTP request's app starts without a trio task of its own.
LOOP = os.environ.get("H2GATE_TEST_LOOP", "trio")


def rss_kib(server: ServerProcess) -> int:
    """The server process's resident set size (VmRSS), in KiB."""
    with open(f"/proc/{server.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def bystander_served(server: ServerProcess, ca_pem: str | None = None) -> None:
    """A well-behaved client on its own connection gets a complete answer (the WSGI test app has no /hello: 404).

    ``ca_pem``: the server speaks TLS, and this CA signed its certificate.
    """
    with RawH2(server.port, ca_pem=ca_pem) as client:
        r = client.get("/hello")
        assert (r.status, r.body, r.reset) in ((200, b"hello", None), (404, b"not found", None)), r


@dataclass
class Target:
    """A server under attack, with its memory at the start."""

    server: ServerProcess
    baseline_kib: int
    ca_pem: str | None = None  # set when the server speaks TLS

    @property
    def port(self) -> int:
        return self.server.port

    def peer(self, **kwargs: object) -> Peer:
        """A raw client connection: TLS with ALPN h2 if the server speaks TLS, else h2c prior knowledge."""
        transport = "h2c" if self.ca_pem is None else "tls"
        return Peer(transport, self.port, cafile=self.ca_pem, **kwargs)  # type: ignore[arg-type]

    def bystander_served(self) -> None:
        bystander_served(self.server, self.ca_pem)

    def memory_bounded(self) -> None:
        grown = (rss_kib(self.server) - self.baseline_kib) / 1024
        assert grown < MEMORY_BOUND_MB, f"server RSS grew by {grown:.1f} MiB during the attack"

    def log(self, pattern: str, timeout: float = 10) -> str:
        return self.server.wait_for_log(pattern, timeout)


@pytest.fixture
def target(serve: Callable[..., ServerProcess], certs: Certs) -> Iterator[Callable[..., Target]]:
    """``target(*flags, app="apps.flow:app", tls=False)``: a server with ``flags``, warmed up, memory noted."""

    def start(*flags: str, app: str = "apps.flow:app", tls: bool = False) -> Target:
        server = serve(app, "--loop", LOOP, "--no-access-log", *flags, tls=tls)
        ca_pem = certs.ca_pem if tls else None
        bystander_served(server, ca_pem)  # warm up: imports and first-request allocations are not the attack's
        return Target(server, rss_kib(server), ca_pem)

    yield start
