"""WebSockets: RFC 8441 over HTTP/2 (raw h2 client + wsproto framing) and RFC 6455 over HTTP/1.1 (wsproto client).

The apps are in ``tests/apps/ws.py``; the clients in ``tests/asgi/wsclients.py``.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from tests.asgi.wsclients import H1WebSocket, H2WebSocket
from tests.conftest import Certs, ServerProcess, h2c_client, tls_client

APP = "apps.ws:app"
MAX = 1_000_000  # --ws-max-message-size of the shared servers


def _start(args: list[str]) -> ServerProcess:
    return ServerProcess([*args, "-b", "127.0.0.1:0"]).wait_ready()


@pytest.fixture(scope="module")
def h2c() -> Iterator[ServerProcess]:
    server = _start([APP, "--ws-max-message-size", str(MAX)])
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def tls(certs: Certs) -> Iterator[ServerProcess]:
    server = _start([APP, "--certfile", certs.cert_pem, "--keyfile", certs.key_pem])
    yield server
    server.stop(signal.SIGKILL)


def last_disconnect(
    server: ServerProcess, path: str = "/echo", timeout: float = 5, certs: Certs | None = None
) -> dict[str, object]:
    """What the app's last websocket.disconnect said (the app records it; GET /last returns it)."""
    deadline = time.monotonic() + timeout
    url = f"https://localhost:{server.port}/last" if certs else f"http://127.0.0.1:{server.port}/last"
    with tls_client(certs) if certs else h2c_client() as client:
        while True:
            last = client.get(url).json()
            if last.get("path") == path or time.monotonic() > deadline:
                return last  # type: ignore[no-any-return]
            time.sleep(0.05)


# -- HTTP/2 (RFC 8441) ------------------------------------------------------------------------


def test_settings_advertise_extended_connect(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        assert ws.enable_connect_protocol == 1
        assert ws.status == 200


def test_h2_echo_text_bytes_subprotocol(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo", protocols=("chat", "superchat")) as ws:
        assert ws.status == 200
        assert ws.headers[b"sec-websocket-protocol"] == b"chat"
        assert b"sec-websocket-extensions" not in ws.headers
        ws.send(TextMessage(data="héllo"))
        assert ws.next_event() == TextMessage(data="héllo")
        ws.send(BytesMessage(data=b"\x00\x01\xff"))
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and event.data == b"\x00\x01\xff"
        # A message in fragments is delivered whole.
        ws.send(TextMessage(data="ab", message_finished=False))
        ws.send(TextMessage(data="cd"))
        assert ws.next_event() == TextMessage(data="abcd")


def test_h2_accept_headers(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/headers") as ws:
        assert ws.status == 200
        assert ws.headers[b"x-ws"] == b"yes"
        assert b"sec-websocket-protocol" not in ws.headers


def test_h2_scope(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/scope?x=1", protocols=("a", "b")) as ws:
        event = ws.next_event()
        assert isinstance(event, TextMessage)
        scope = json.loads(event.data)
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "x=1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["asgi"]["version"] == "3.0"
    assert "method" not in scope
    assert ["host", f"localhost:{h2c.port}"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", h2c.port]
    assert "websocket.http.response" in scope["extensions"]


def test_h2_tls_scope_is_wss(tls: ServerProcess, certs: Certs) -> None:
    with H2WebSocket(tls.port, "/scope", ca_pem=certs.ca_pem) as ws:
        assert ws.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
        event = ws.next_event()
        assert isinstance(event, TextMessage)
        scope = json.loads(event.data)
    assert scope["scheme"] == "wss" and scope["http_version"] == "2"
    assert "tls" in scope["extensions"]


def test_h2_client_close_code_reaches_app(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(CloseConnection(code=4001, reason="see you"))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 4001
        ws.wait_end()
        assert ws.ended and ws.reset_code is None  # orderly: END_STREAM, not RST_STREAM
    assert last_disconnect(h2c) == {"code": 4001, "reason": "see you", "path": "/echo"}


def test_h2_client_close_without_code_is_1005(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(TextMessage(data="x"))
        ws.next_event()
        ws.send_raw(b"\x88\x80\x00\x00\x00\x00")  # masked close frame, empty payload
        event = ws.next_event()
        assert isinstance(event, CloseConnection)
        ws.wait_end()
    assert last_disconnect(h2c)["code"] == 1005


def test_h2_server_close(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(TextMessage(data="close:4002:bye now"))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4002, "bye now")
        ws.send(event.response())
        ws.wait_end()
        assert ws.ended and ws.reset_code is None
    assert last_disconnect(h2c)["code"] == 4002


def test_h2_client_reset_is_disconnect_1006(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(TextMessage(data="x"))
        ws.next_event()
        ws.send(CloseConnection(code=4003))  # leaves a known value behind first
        ws.next_event()
        ws.wait_end()
    assert last_disconnect(h2c)["code"] == 4003
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(TextMessage(data="x"))
        ws.next_event()
        ws.reset(ErrorCodes.CANCEL)
        deadline = time.monotonic() + 5
        while last_disconnect(h2c)["code"] != 1006 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert last_disconnect(h2c)["code"] == 1006


def test_h2_ping_pong(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(Ping(payload=b"are you there"))
        assert ws.next_event() == Pong(payload=b"are you there")


def test_h2_oversize_message_closes_1009(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(BytesMessage(data=b"a" * (MAX // 2)))
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and len(event.data) == MAX // 2
        ws.send(BytesMessage(data=b"b" * (MAX + 1)))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1009
    assert last_disconnect(h2c)["code"] == 1009


def test_h2_permessage_deflate(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo", deflate=True) as ws:
        assert ws.status == 200
        assert ws.headers[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
        text = "compress me " * 20_000  # 240 kB that deflates to almost nothing
        ws.send(TextMessage(data=text))
        assert ws.next_event() == TextMessage(data=text)
        # The size limit applies after decompression (a zip bomb gets 1009).
        ws.send(BytesMessage(data=b"\x00" * (MAX + 10)))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1009


def test_h2_flow_control_both_ways(h2c: ServerProcess) -> None:
    # Inbound: a message larger than the server's stream window (256 KiB) only
    # gets through because the server opens the window as its app receives.
    with H2WebSocket(h2c.port, "/echo") as ws:
        ws.send(BytesMessage(data=b"u" * 700_000))
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and len(event.data) == 700_000
    # Outbound: with a 1000-byte client window the server must wait for our WINDOW_UPDATEs.
    with H2WebSocket(h2c.port, "/echo", window=1000) as ws:
        ws.send(TextMessage(data="big:300000"))
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and len(event.data) == 300_000


@pytest.fixture(scope="module")
def h2c_fixed() -> Iterator[ServerProcess]:
    """Fixed receive windows: what the reader holds for a busy app is the only slack."""
    server = _start([APP, "--ws-max-message-size", str(MAX), "--max-window-size", "0"])
    yield server
    server.stop(signal.SIGKILL)


def test_h2_slow_app_holds_the_client_to_its_window(h2c_fixed: ServerProcess) -> None:
    # With adaptive windows (the default) the reader's first burst (the initial window plus its
    # 64 KiB) can land inside one PING round trip and grow the window past the message: on a busy
    # machine it did. That growth is flowcontrol's business (tests/protocol/test_long_path.py);
    # this test is about the reader not taking more than it holds for the app.
    with H2WebSocket(h2c_fixed.port, "/stall") as ws:
        assert ws.ws is not None
        frame = ws.ws.send(BytesMessage(data=b"s" * 900_000))
        sent = 0
        for _ in range(1000):
            if ws.h2.local_flow_control_window(ws.sid) <= 0:
                try:
                    ws.pump(timeout=0.5)  # WINDOW_UPDATEs for what the server's reader took
                except TimeoutError:
                    break
                continue
            size = min(ws.h2.local_flow_control_window(ws.sid), ws.h2.max_outbound_frame_size)
            ws.h2.send_data(ws.sid, frame[sent : sent + size])
            sent += size
            ws.flush()
        # The server's stream window (256 KiB) plus what its reader holds for a busy app
        # (64 KiB, overshot by at most one read): not the whole message.
        assert sent < 700_000
        with pytest.raises(TimeoutError):
            ws.pump(timeout=0.5)  # nothing more acknowledged while the app is not receiving
        assert ws.h2.local_flow_control_window(ws.sid) == 0
        ws.send_raw(frame[sent:])  # the app receives now: the window opens
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and len(event.data) == 900_000


def test_h2_denial_response(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/deny") as ws:
        assert ws.status == 403
        assert ws.headers[b"x-denied"] == b"yes"
        assert ws.read_response() == b"not allowed"


def test_h2_close_before_accept_is_403_and_error_is_500(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/reject") as ws:
        assert ws.status == 403
    with H2WebSocket(h2c.port, "/boom-early") as ws:
        assert ws.status == 500
    h2c.wait_for_log("WebSocket /boom-early: exception in the app")


def test_h2_app_error_after_accept_closes_1011(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/boom") as ws:
        assert ws.status == 200
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1011


def test_h2_other_connect_protocol_is_501(h2c: ServerProcess) -> None:
    with H2WebSocket(h2c.port, "/echo", protocol="webtransport") as ws:
        assert ws.status == 501


def test_shutdown_closes_websockets_1001(serve, certs: Certs) -> None:
    server = serve(APP)
    h2ws = H2WebSocket(server.port, "/echo")
    h1ws = H1WebSocket(server.port, "/echo")
    try:
        for ws in (h2ws, h1ws):
            ws.send(TextMessage(data="ready?"))
            assert ws.next_event() == TextMessage(data="ready?")
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for ws in (h2ws, h1ws):
            event = ws.next_event()
            assert isinstance(event, CloseConnection) and event.code == 1001
            ws.send(event.response())
        assert server.stop() == 0
        assert time.monotonic() - started < 10  # well inside the 30 s grace period
    finally:
        h2ws.close()
        h1ws.close()


def test_http_still_works_beside_websockets(h2c: ServerProcess) -> None:
    with h2c_client() as client:
        r = client.get(f"http://127.0.0.1:{h2c.port}/last")
    assert r.status_code == 200 and r.http_version == "HTTP/2"


# -- HTTP/1.1 (RFC 6455) ----------------------------------------------------------------------


def test_h1_cleartext_echo_deflate_subprotocol(h2c: ServerProcess) -> None:
    with H1WebSocket(h2c.port, "/echo", protocols=("chat",), deflate=True) as ws:
        assert ws.accepted is not None
        assert ws.accepted.subprotocol == "chat"
        assert [e.name for e in ws.accepted.extensions] == ["permessage-deflate"]  # type: ignore[union-attr]
        ws.send(TextMessage(data="over http/1.1 " * 1000))
        assert ws.next_event() == TextMessage(data="over http/1.1 " * 1000)
        ws.send(BytesMessage(data=b"\x01\x02"))
        event = ws.next_event()
        assert isinstance(event, BytesMessage) and event.data == b"\x01\x02"
        ws.send(Ping(payload=b"p"))
        assert ws.next_event() == Pong(payload=b"p")
        ws.send(CloseConnection(code=4005, reason="h1 bye"))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 4005
    assert last_disconnect(h2c) == {"code": 4005, "reason": "h1 bye", "path": "/echo"}


def test_h1_scope(h2c: ServerProcess) -> None:
    with H1WebSocket(h2c.port, "/scope?q=2", protocols=("p1",)) as ws:
        event = ws.next_event()
        assert isinstance(event, TextMessage)
        scope = json.loads(event.data)
    assert scope["type"] == "websocket" and scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws" and scope["path"] == "/scope" and scope["query_string"] == "q=2"
    assert scope["subprotocols"] == ["p1"]
    names = [name for name, _ in scope["headers"]]
    assert "host" in names and "sec-websocket-key" in names


def test_h1_tls_alpn_http11(tls: ServerProcess, certs: Certs) -> None:
    with H1WebSocket(tls.port, "/scope", ca_pem=certs.ca_pem) as ws:
        assert ws.alpn == "http/1.1"
        assert ws.accepted is not None
        event = ws.next_event()
        assert isinstance(event, TextMessage)
        scope = json.loads(event.data)
        assert scope["scheme"] == "wss" and scope["http_version"] == "1.1"
    with H1WebSocket(tls.port, "/echo", ca_pem=certs.ca_pem) as ws:
        ws.send(TextMessage(data="secure"))
        assert ws.next_event() == TextMessage(data="secure")
        ws.send(TextMessage(data="close:4006:tls"))
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 4006
        ws.send(event.response())
    assert last_disconnect(tls, certs=certs)["code"] == 4006


def test_h1_denial_and_reject(h2c: ServerProcess) -> None:
    with H1WebSocket(h2c.port, "/deny") as ws:
        assert ws.rejected is not None and ws.rejected.status_code == 403
        assert (b"x-denied", b"yes") in ws.rejected.headers
        assert ws.read_response() == b"not allowed"
    with H1WebSocket(h2c.port, "/reject") as ws:
        assert ws.rejected is not None and ws.rejected.status_code == 403


def test_h1_other_requests_still_505(h2c: ServerProcess, tls: ServerProcess, certs: Certs) -> None:
    r = httpx.get(f"http://127.0.0.1:{h2c.port}/last")
    assert r.status_code == 505
    with httpx.Client(verify=certs.ca_pem) as client:  # TLS, ALPN http/1.1
        assert client.get(f"https://localhost:{tls.port}/last").status_code == 505


@pytest.mark.parametrize(
    "change",
    [
        {b"sec-websocket-version": b"8"},
        {b"sec-websocket-key": b"not base64!"},
        {b"upgrade": b"h2c"},
        {b"connection": b"keep-alive"},
    ],
    ids=["version-8", "bad-key", "not-websocket", "no-connection-upgrade"],
)
def test_h1_invalid_upgrade_gets_505(h2c: ServerProcess, change: dict[bytes, bytes]) -> None:
    fields = {
        b"host": b"localhost",
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==",
        b"sec-websocket-version": b"13",
        **change,
    }
    request = b"GET /echo HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in fields.items()) + b"\r\n"
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 505 ")


def test_no_ws_http1_refuses_upgrade(serve) -> None:
    server = serve(APP, "--no-ws-http1")
    with H1WebSocket(server.port, "/echo") as ws:
        assert ws.rejected is not None and ws.rejected.status_code == 505
    # RFC 8441 still works.
    with H2WebSocket(server.port, "/echo") as ws:
        assert ws.status == 200


def test_wsgi_app_does_not_advertise_extended_connect(serve) -> None:
    server = serve("apps.wsgi_apps:raw")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    settings: dict[int, int] = {}
    while not settings:
        for event in conn.receive_data(sock.recv(65536)):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                settings = {k: v.new_value for k, v in event.changed_settings.items()}
    sock.close()
    assert settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0


# -- frameworks -------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_starlette_websocket(serve, loop: str) -> None:
    server = serve("apps.ws:star", "--loop", loop)
    with H2WebSocket(server.port, "/ws", protocols=("chat",)) as ws:
        assert ws.status == 200 and ws.headers[b"sec-websocket-protocol"] == b"chat"
        assert ws.next_event() == TextMessage(data=f"loop={loop}")
        ws.send(TextMessage(data="shout"))
        assert ws.next_event() == TextMessage(data="SHOUT")
        ws.send(CloseConnection(code=1000))
        assert isinstance(ws.next_event(), CloseConnection)
    with H1WebSocket(server.port, "/json") as ws:
        assert ws.accepted is not None
        ws.send(TextMessage(data='{"a": 1}'))
        assert ws.next_event() == TextMessage(data='{"got":{"a":1}}')
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4000, "done")
    with H2WebSocket(server.port, "/nowhere") as ws:
        assert ws.status == 403  # Starlette closes unknown websocket routes before accepting
