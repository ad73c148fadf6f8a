"""RFC 9218 priorities: the scheduler as a pure object, and the order a real server sends in.

The end-to-end tests play a client whose connection window is used up by a
large download, open a second stream, then grant window once and look at who
got it: an ordering check, never a timing one.
"""

from __future__ import annotations

import time

import pytest
from h2.errors import ErrorCodes

from h2gate.protocol.priority import (
    DEFAULT,
    MAX_EARLY_UPDATES,
    UNSIGNALLED,
    Priority,
    Scheduler,
    parse_priority,
    priority_of_headers,
)
from tests.h2raw import RawH2

APP = "apps.observe:app"
WINDOW = 65_535  # the client's initial windows (stream and connection)

# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"u=0", Priority(0, False)),
        (b"u=5, i", Priority(5, True)),
        (b"i=?1,u=7", Priority(7, True)),
        (b"i=?0", Priority(3, False)),
        (b"", DEFAULT),
        (b"u=2;foo=1, x=abc", Priority(2, False)),  # parameters and unknown members ignored
        (b"u=8", DEFAULT),  # out of range: the member is ignored
        (b"u=-1, i", Priority(3, True)),
        (b"u=1.5", DEFAULT),  # not an integer
        (b"i=7", DEFAULT),  # not a boolean
    ],
)
def test_parse_priority(value: bytes, expected: Priority) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize("value", [b"U=1", b"u=", b"=1", b"u=1,,i", b"1u", b"u=0" + b" " * 2000])
def test_malformed_priority_is_void(value: bytes) -> None:
    assert parse_priority(value) is None


def test_priority_of_headers_joins_field_lines() -> None:
    assert priority_of_headers([(b"accept", b"*/*")]) is None
    assert priority_of_headers([(b"priority", b"u=1"), (b"priority", b"i")]) == Priority(1, True)
    assert priority_of_headers([(b"priority", b"u=1, ==")]) is None


# -- the scheduler -----------------------------------------------------------------------------


def turns(scheduler: Scheduler, count: int) -> list[int]:
    """Which stream sends, ``count`` turns in a row."""
    order = []
    for _ in range(count):
        sid = scheduler.next()
        assert sid is not None
        order.append(sid)
        scheduler.sent(sid)
    return order


def test_lowest_urgency_first() -> None:
    s = Scheduler()
    s.wait(1, Priority(5, True))
    s.wait(3, Priority(2, False))
    s.wait(5, Priority(7, False))
    assert turns(s, 3) == [3, 3, 3]
    s.leave(3)
    assert turns(s, 2) == [1, 1]
    s.leave(1)
    assert s.next() == 5
    s.leave(5)
    assert s.next() is None and not s.busy


def test_round_robin_among_incremental_equals() -> None:
    s = Scheduler()
    for sid in (1, 3, 5):
        s.wait(sid, UNSIGNALLED)
    assert turns(s, 7) == [1, 3, 5, 1, 3, 5, 1]
    s.leave(3)
    assert turns(s, 3) == [5, 1, 5]


def test_non_incremental_one_at_a_time_before_incremental_peers() -> None:
    s = Scheduler()
    s.wait(1, Priority(3, True))
    s.wait(7, Priority(3, False))
    s.wait(5, Priority(3, False))
    assert turns(s, 3) == [5, 5, 5]  # lowest id first, and it keeps the turn
    s.leave(5)
    assert turns(s, 2) == [7, 7]
    s.leave(7)
    assert turns(s, 2) == [1, 1]


def test_waiting_twice_keeps_the_place() -> None:
    s = Scheduler()
    s.wait(1, UNSIGNALLED)
    s.wait(3, UNSIGNALLED)
    s.wait(1, UNSIGNALLED)
    assert turns(s, 2) == [1, 3]


def test_update_moves_a_waiting_stream_and_is_remembered() -> None:
    s = Scheduler()
    s.wait(1, Priority(3, False))
    s.wait(3, Priority(3, False))
    assert s.next() == 1
    assert s.update(3, b"u=0")
    assert s.next() == 3
    assert s.priority(3, Priority(6, False)) == Priority(0, False)  # the update wins over the header
    assert not s.update(3, b"u=?")  # malformed: ignored
    assert s.next() == 3
    s.forget(3)
    assert s.priority(3, None) == UNSIGNALLED and s.next() == 1


def test_update_starts_from_what_the_stream_had() -> None:
    s = Scheduler()
    s.wait(1, Priority(6, True))
    assert s.update(1, b"u=1")
    assert s.priority(1, None) == Priority(1, True)


def test_early_updates_are_bounded() -> None:
    s = Scheduler()
    for sid in range(1, 2 * (MAX_EARLY_UPDATES + 10), 2):
        assert s.update(sid, b"u=1")
    assert s.priority(1, None) == UNSIGNALLED  # the oldest was dropped
    assert s.priority(2 * (MAX_EARLY_UPDATES + 10) - 1, None) == Priority(1, False)


# -- end to end --------------------------------------------------------------------------------


def priority_update(stream_id: int, value: bytes, *, on_stream: int = 0) -> bytes:
    payload = stream_id.to_bytes(4, "big") + value
    return len(payload).to_bytes(3, "big") + b"\x10\x00" + on_stream.to_bytes(4, "big") + payload


def stall_download(client: RawH2, priority: bytes) -> int:
    """Start a 300 kB download and read until it used up the client's connection window."""
    big = client.request("GET", "/big?n=300000", headers=[(b"priority", priority)])
    client.response(big, until=lambda s: s.received >= WINDOW)
    return big


def open_second(client: RawH2, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """A second request on the stalled connection; returns once its response is waiting for window."""
    sid = client.request("GET", path, headers=headers)
    client.response(sid, until=lambda s: s.status is not None)
    deadline = time.monotonic() + 0.3  # let the server's stream reach its window wait
    while time.monotonic() < deadline:
        client.pump(0.05)
    return sid


def grant(client: RawH2, big: int, size: int) -> None:
    """One window grant: ``size`` on the download's stream, then (once that is in) on the connection.

    The download is woken first and could take the whole grant; who gets it shows the send order.
    """
    client.h2.increment_flow_control_window(size, stream_id=big)
    client.flush()
    settle(client, 0.2)
    client.h2.increment_flow_control_window(size)
    client.flush()


def settle(client: RawH2, seconds: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.pump(0.05)


def test_urgent_small_response_is_sent_before_the_stalled_download(serve) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        big = stall_download(client, b"u=7")
        small = open_second(client, "/big?n=3000", [(b"priority", b"u=0")])
        assert client.streams[small].received == 0
        grant(client, big, 4096)
        settle(client)
        # The grant went to the urgent stream first: it completed, the download got the rest.
        assert client.streams[small].ended and len(client.streams[small].body) == 3000
        assert client.streams[big].received == WINDOW + 4096 - 3000


def test_unsignalled_streams_share_round_robin(serve) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        big = client.request("GET", "/big?n=300000")  # no priority header
        client.response(big, until=lambda s: s.received >= WINDOW)
        small = open_second(client, "/", [])
        grant(client, big, 100_000)
        settle(client)
        assert client.streams[small].ended and not client.streams[big].ended


def test_non_incremental_download_keeps_the_window_and_priority_update_reorders(serve) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        big = stall_download(client, b"u=3")
        first = open_second(client, "/big?n=1000", [(b"priority", b"u=3")])
        grant(client, big, 4096)
        settle(client)
        # Same urgency, not incremental: the older stream is served first, the newer one waits.
        assert client.streams[first].received == 0
        assert client.streams[big].received == WINDOW + 4096
        second = open_second(client, "/big?n=1000", [(b"priority", b"u=3")])
        client.sock.sendall(priority_update(second, b"u=1"))
        client.sock.sendall(priority_update(first, b"u=0, =x"))  # malformed: ignored
        grant(client, big, 4096)
        settle(client)
        assert client.streams[second].ended and len(client.streams[second].body) == 1000
        assert client.streams[first].received == 0
        assert client.streams[big].received == WINDOW + 4096 + 4096 - 1000


def test_malformed_priority_header_is_ignored(serve) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        big = stall_download(client, b"u=3")
        small = open_second(client, "/", [(b"priority", b"u=0, ;;")])
        grant(client, big, 4096)
        settle(client)
        # Ignored, the header leaves the stream unsignalled (urgency 3, round-robin), behind the
        # non-incremental download of the same urgency; urgency 0 would have put it first.
        assert client.streams[small].received == 0
        assert client.streams[big].received == WINDOW + 4096


def test_server_advertises_no_rfc7540_priorities(serve) -> None:
    server = serve(APP)
    with RawH2(server.port) as client:
        client.wait_for(lambda: 9 in client.remote_settings, 5, "SETTINGS")
        assert client.remote_settings[9] == 1
        assert client.get("/").body == b"ok"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (priority_update(1, b"u=1", on_stream=1), ErrorCodes.PROTOCOL_ERROR),
        (priority_update(0, b"u=1"), ErrorCodes.PROTOCOL_ERROR),
        (b"\x00\x00\x02\x10\x00\x00\x00\x00\x00\x00\x01", ErrorCodes.FRAME_SIZE_ERROR),
    ],
)
def test_invalid_priority_update_frame_is_a_connection_error(serve, frame: bytes, code: ErrorCodes) -> None:
    server = serve(APP)
    with RawH2(server.port) as client:
        assert client.get("/").body == b"ok"
        client.sock.sendall(frame)
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY")
        assert client.goaways[-1].error_code == code


def test_priority_update_for_an_unopened_stream_applies_when_it_opens(serve) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        big = stall_download(client, b"u=3")
        upcoming = client.h2.get_next_available_stream_id()
        client.sock.sendall(priority_update(upcoming, b"u=0"))
        small = open_second(client, "/big?n=3000", [(b"priority", b"u=6")])
        assert small == upcoming
        grant(client, big, 4096)
        settle(client)
        assert client.streams[small].ended  # urgency 0 from the update, not 6 from the header
        assert client.streams[big].received == WINDOW + 4096 - 3000


def test_urgency_orders_streams_waiting_for_the_socket(serve) -> None:
    """Huge windows, a client that stops reading: the streams contend for the writer, not for window."""
    server = serve(APP)
    with RawH2(server.port, settings={4: 2**31 - 1}) as client:
        client.h2.increment_flow_control_window(2**31 - 1 - WINDOW)
        client.flush()
        size = 16_000_000
        low = client.request("GET", f"/big?n={size}", headers=[(b"priority", b"u=7")], keep_data=False)
        client.response(low, until=lambda s: s.received > 0)
        time.sleep(0.5)  # not reading: the server's socket fills up and its writer backs up
        high = client.request("GET", f"/big?n={size}", headers=[(b"priority", b"u=0")], keep_data=False)
        time.sleep(0.3)
        order: list[int] = []
        deadline = time.monotonic() + 60
        while len(order) < 2 and time.monotonic() < deadline:
            client.pump(0.2)
            order += [sid for sid in (low, high) if client.streams[sid].ended and sid not in order]
        assert client.streams[low].received == client.streams[high].received == size
        # The urgent download, though started later and as large, finished first.
        assert order == [high, low]


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_unsignalled_streamed_downloads_share_the_backed_up_writer(serve, loop: str) -> None:
    """Two streamed downloads without priority signals, a client that stops reading: they alternate.

    Under ``--loop asyncio`` such chunks wait for the writer on the app's side
    (Exchange.send_data_nowait's ``room``), not through the scheduler; the
    order they come back in must still be round-robin, and no byte lost.
    """
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log")
    size = 12 * 1024 * 1024
    with RawH2(server.port, settings={4: 2**31 - 1}) as client:
        client.h2.increment_flow_control_window(2**31 - 1 - WINDOW)
        client.flush()
        first = client.request("GET", f"/download?key=a{loop}&size={size}&chunk=65536", keep_data=False)
        client.response(first, until=lambda s: s.received > 0)
        time.sleep(0.5)  # not reading: the server's socket fills up and its writer backs up
        second = client.request("GET", f"/download?key=b{loop}&size={size}&chunk=65536", keep_data=False)
        time.sleep(0.3)
        behind_at_first_end: int | None = None
        deadline = time.monotonic() + 60
        while not (client.streams[first].ended and client.streams[second].ended):
            assert time.monotonic() < deadline, "downloads stalled"
            client.pump(0.2)
            if behind_at_first_end is None and (client.streams[first].ended or client.streams[second].ended):
                behind_at_first_end = min(client.streams[first].received, client.streams[second].received)
        assert client.streams[first].received == client.streams[second].received == size
        # Round-robin: when one ended, the other (opened later, behind a backed-up writer) was well under way.
        assert behind_at_first_end is not None and behind_at_first_end > size // 2, behind_at_first_end
