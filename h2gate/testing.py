"""pytest plugin: serve your ASGI or WSGI app with the real h2gate, over HTTP/2 on loopback, inside the test.

Installed with h2gate (entry point ``pytest11``), so the fixture is there
without any ``conftest.py``; its client side needs ``pip install
'h2gate[testing]'`` (httpx with HTTP/2, trustme)::

    def test_home(h2gate_server):
        server = h2gate_server(app)                  # TLS with a throwaway CA; tls=False for h2c
        with server.client() as client:              # httpx.Client(http2=True), trusting the CA
            response = client.get("/")
        assert response.http_version == "HTTP/2"

``h2gate_server(app, tls=True, interface="auto", fail_on_error=True, **options)``
takes the app object (not an import string) and any option of the options
table by its field name (``loop="trio"``, ``max_body_size=1024``, ...). The
server starts on a free 127.0.0.1 port and is stopped gracefully at teardown.
Works the same in plain, ``pytest-trio`` and ``anyio`` tests: the server runs
in its own thread, so ``async_client()`` works in whatever loop the test runs.

If h2gate logs an ERROR while the test runs (an app exception, an ASGI
mistake), the test fails with those records; pass ``fail_on_error=False`` and
look at ``server.errors`` to assert on expected ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from h2gate.ops.inprocess import InProcessServer, ThrowawayCA


@dataclass
class _Started:
    server: InProcessServer
    fail_on_error: bool
    reported: int = 0  # errors already reported, so teardown does not repeat the call's failure


_SERVERS = pytest.StashKey[list[_Started]]()


def _describe(records: list[logging.LogRecord]) -> str:
    lines = []
    for record in records:
        lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(f"    {type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
    return "\n".join(lines)


def _check_errors(item: pytest.Item, when: str) -> None:
    new: list[logging.LogRecord] = []
    for started in item.stash.get(_SERVERS, []):
        errors = started.server.errors
        if started.fail_on_error and len(errors) > started.reported:
            new += errors[started.reported :]
            started.reported = len(errors)
    if new:
        pytest.fail(f"h2gate logged {len(new)} error(s) {when}:\n{_describe(new)}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test itself (not only its teardown) when a server it started logged an ERROR."""
    result = yield
    _check_errors(item, "during the test")
    return result


@pytest.fixture(scope="session")
def h2gate_ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    """The throwaway CA (and server certificate for 127.0.0.1/localhost) of this test session."""
    from h2gate.ops.inprocess import ThrowawayCA

    return ThrowawayCA(str(tmp_path_factory.mktemp("h2gate-ca")))


@pytest.fixture
def h2gate_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., InProcessServer]]:
    """Factory: ``h2gate_server(app, tls=True, interface="auto", fail_on_error=True, **options)``.

    Returns a started :class:`h2gate.ops.inprocess.InProcessServer` (``url``,
    ``ca_file``, ``client()``, ``async_client()``, ``errors``); every server
    it started is stopped gracefully at teardown.
    """
    from h2gate.ops.inprocess import InProcessServer

    started: list[_Started] = []
    request.node.stash[_SERVERS] = started

    def start(
        app: Any, *, tls: bool = True, interface: str = "auto", fail_on_error: bool = True, **options: Any
    ) -> InProcessServer:
        files: dict[str, Any] = {}
        if tls:
            ca: ThrowawayCA = request.getfixturevalue("h2gate_ca")
            files = {"certfile": ca.certfile, "keyfile": ca.keyfile, "ca_file": ca.ca_file}
        server = InProcessServer(app, tls=tls, interface=interface, options=options, **files)
        server.start()
        started.append(_Started(server, fail_on_error))
        return server

    yield start
    problems = []
    for entry in reversed(started):
        try:
            entry.server.stop()
        except RuntimeError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    _check_errors(request.node, "by teardown")
