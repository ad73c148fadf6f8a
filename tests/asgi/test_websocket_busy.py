"""WebSockets whose app is busy (not inside receive()): pings and closes are still answered at once,
messages wait in a bounded queue, and past that bound the client is held to its flow-control window.

The app (``tests/apps/ws_busy.py``) naps without receiving; a nap far longer than
the client's wait proves the answer came while it was napping, not after.
"""

from __future__ import annotations

import time

import pytest
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from tests.asgi.wsclients import H1WebSocket, H2WebSocket
from tests.conftest import ServerProcess, h2c_client

APP = "apps.ws_busy:app"
LONG_NAP = 60  # seconds: longer than any wait below


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, serve) -> ServerProcess:  # type: ignore[no-untyped-def]
    return serve(APP, "--loop", request.param, "--ws-max-message-size", "1000000")  # type: ignore[no-any-return]


def test_h2_ping_answered_while_app_is_busy(server: ServerProcess) -> None:
    with H2WebSocket(server.port, f"/nap?secs={LONG_NAP}") as ws:
        assert ws.status == 200
        for n in range(3):
            ws.send(Ping(payload=b"ping %d" % n))
            assert ws.next_event(timeout=10) == Pong(payload=b"ping %d" % n)


def test_h1_ping_answered_while_app_is_busy(server: ServerProcess) -> None:
    with H1WebSocket(server.port, f"/nap?secs={LONG_NAP}") as ws:
        assert ws.accepted is not None
        ws.send(Ping(payload=b"cold"))
        assert ws.next_event(timeout=10) == Pong(payload=b"cold")


def test_messages_wait_in_order_behind_a_prompt_pong(server: ServerProcess) -> None:
    with H2WebSocket(server.port, "/nap?secs=2") as ws:
        started = time.monotonic()
        ws.send(TextMessage(data="first"))
        ws.send(BytesMessage(data=b"second"))
        ws.send(Ping(payload=b"now"))
        assert ws.next_event(timeout=10) == Pong(payload=b"now")  # before the app echoes anything
        assert time.monotonic() - started < 2, "the pong waited for the app"
        assert ws.next_event(timeout=10) == TextMessage(data="first")
        assert ws.next_event(timeout=10) == BytesMessage(data=b"second")


def test_close_answered_while_app_is_busy(server: ServerProcess) -> None:
    with H2WebSocket(server.port, f"/nap?secs={LONG_NAP}") as ws:
        ws.send(CloseConnection(code=1000, reason="bye"))
        reply = ws.next_event(timeout=10)
        assert isinstance(reply, CloseConnection) and reply.code == 1000


def test_busy_app_sees_the_disconnect_after_queued_messages(server: ServerProcess) -> None:
    with H2WebSocket(server.port, "/nap?secs=1.5") as ws:
        ws.send(TextMessage(data="kept"))
        ws.send(CloseConnection(code=4001, reason="done"))
        reply = ws.next_event(timeout=10)
        assert isinstance(reply, CloseConnection) and reply.code == 4001
    deadline = time.monotonic() + 10
    with h2c_client() as client:
        while (last := client.get(server.url + "/last").json()).get("code") != 4001:
            assert time.monotonic() < deadline, "the app never saw the disconnect"
            time.sleep(0.1)
    assert last["got"] == ["kept"]  # the message queued before the close reached the app first


def test_busy_app_holds_the_client_to_its_window(server: ServerProcess) -> None:
    with H2WebSocket(server.port, f"/nap?secs={LONG_NAP}") as ws:
        assert ws.ws is not None
        ws.send(Ping(payload=b"warm"))
        assert ws.next_event(timeout=10) == Pong(payload=b"warm")
        frame = ws.ws.send(BytesMessage(data=b"m" * 20_000))
        sent = 0
        for _ in range(200):  # 4 MB of messages at most; the server must stop well before
            window = ws.h2.local_flow_control_window(ws.sid)
            if window < len(frame):
                try:
                    ws.pump(timeout=1.0)  # any WINDOW_UPDATE the server still sends
                except TimeoutError:
                    break
                continue
            ws.send_raw(frame)
            sent += len(frame)
        # The server took its stream window (256 KiB) and its queue bound (64 KiB) plus one read, no more.
        assert 0 < sent < 700_000
        with pytest.raises(TimeoutError):
            ws.pump(timeout=0.5)  # nothing more is acknowledged while the app is busy
        assert ws.h2.local_flow_control_window(ws.sid) < len(frame)
