"""The driver's task structure: an idle connection is its own task alone, the writer comes and goes.

An idle connection holds no writer task and no stream task (bench/README.md,
"Idle connection memory"); the next request starts a writer again, and the
connection still serves it and ends cleanly when the client goes. Real
sockets (a trio socket pair), the real driver and core, a client on h2.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import trio

from h2gate.config import Config
from h2gate.net.transport import CleartextTransport
from h2gate.protocol.driver import Connection
from h2gate.protocol.replies import simple_response
from h2gate.protocol.stream import Stream
from tests.protocol.harness import CODEC


async def _answer(conn: Connection, stream: Stream) -> None:
    await simple_response(stream, 200, b"hello", False)


async def _request(client: h2.connection.H2Connection, sock: trio.SocketStream, stream_id: int) -> bytes:
    """One GET on ``stream_id``; the response body once the stream has ended."""
    client.send_headers(stream_id, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")], True)
    await sock.send_all(client.data_to_send())
    body = b""
    while True:
        data = await sock.receive_some(65536)
        assert data, "the server closed the connection"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, stream_id)
            if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                await sock.send_all(client.data_to_send())
                return body
        await sock.send_all(client.data_to_send())


def _tasks_under(nursery: trio.Nursery) -> int:
    """Every task in ``nursery`` and, recursively, in the nurseries its tasks opened."""
    return sum(1 + sum(_tasks_under(inner) for inner in task.child_nurseries) for task in nursery.child_tasks)


async def _idle(conn: Connection) -> None:
    """Wait until the connection has no task besides its own (bounded: the test fails, it does not hang)."""
    nursery = conn._nursery
    assert nursery is not None
    with trio.fail_after(5):
        while nursery.child_tasks:
            await trio.sleep(0.01)


def test_an_idle_connection_keeps_no_writer_and_the_next_request_starts_one() -> None:
    async def main() -> None:
        server_sock, client_sock = trio.socket.socketpair()
        server, client_stream = trio.SocketStream(server_sock), trio.SocketStream(client_sock)
        conn = Connection(CleartextTransport(server, None, None), Config(codec=CODEC), _answer)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        with trio.fail_after(20):  # every step is bounded: a hang fails the test
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run)
                await client_stream.send_all(client.data_to_send())
                assert await _request(client, client_stream, 1) == b"hello"
                await _idle(conn)
                assert _tasks_under(nursery) == 1  # run() alone: it is the reader; no writer, no stream
                assert not conn._writer_on and conn.open_streams == 0
                assert await _request(client, client_stream, 3) == b"hello"  # a writer again, and gone again
                await _idle(conn)
                assert _tasks_under(nursery) == 1 and not conn._writer_on
                await client_stream.aclose()  # the client goes: run() ends and the nursery with it
        assert conn.core.closed

    trio.run(main)
