"""The "h2 floor": what h2's state machines alone cost per small request, in memory, on one core.

Two ``h2.connection.H2Connection`` objects talk to each other with no sockets,
TLS, event loop or ASGI; the server side's time is what a server running h2
as it comes cannot go below. Printed by bench/run.py beside the servers' figures.
"""

from __future__ import annotations

import statistics
import time

from bench.servers import HELLO, module_version


def h2_floor(iterations: int, rounds: int = 3) -> tuple[float, float]:
    """Best-of-``rounds`` microseconds per request/response exchange through two in-memory h2 connections.

    Returns (whole exchange, server side only).  The server side is what a server running h2 as it comes
    must at least spend per request: parse the request frames, emit response HEADERS + a 13-byte DATA.
    """
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, RequestReceived

    req_headers = [
        (b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"127.0.0.1:8443"),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]  # fmt: skip
    resp_headers = [
        (b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13"), (b"server", b"h2gate"),
    ]  # fmt: skip
    best_total = best_server = float("inf")
    for _ in range(rounds):
        client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        client.initiate_connection()
        server.initiate_connection()
        for _ in range(3):  # preface, SETTINGS and their ACKs
            server.receive_data(client.data_to_send())
            client.receive_data(server.data_to_send())
        server_time = 0.0
        perf = time.perf_counter
        start = perf()
        for _ in range(iterations):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, req_headers, end_stream=True)
            wire = client.data_to_send()  # also carries any WINDOW_UPDATE from the previous exchange
            t0 = perf()
            for event in server.receive_data(wire):
                if isinstance(event, RequestReceived):
                    server.send_headers(event.stream_id, resp_headers)
                    server.send_data(event.stream_id, HELLO, end_stream=True)
            out = server.data_to_send()
            server_time += perf() - t0
            for event in client.receive_data(out):
                if isinstance(event, DataReceived):
                    client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        total = perf() - start
        best_total = min(best_total, total / iterations * 1e6)
        best_server = min(best_server, server_time / iterations * 1e6)
    return best_total, best_server


def print_floor(iterations: int, floors: list[tuple[float, float]]) -> None:
    """The floor measured once per round (``floors``): the median, and every round's figure if more than one."""
    exchange_us = statistics.median(f[0] for f in floors)
    server_us = statistics.median(f[1] for f in floors)
    each = ", ".join(f"{f[1]:.1f}" for f in floors)
    rounds = f"; median of {len(floors)} bench rounds: {each}" if floors[1:] else ""
    print(
        "\nh2 floor (the h2 state machines alone, in memory, no sockets/TLS/ASGI, one core):\n"
        f"  server side only:              {server_us:7.1f} us/request -> ceiling {1e6 / server_us:9,.0f} req/s\n"
        f"  full exchange (client+server): {exchange_us:7.1f} us/request -> ceiling {1e6 / exchange_us:9,.0f} req/s\n"
        f"  ({iterations} exchanges per round, best of 3 rounds{rounds}, h2 {module_version('h2')};\n"
        "  under h2load the client half runs in C, so the server-side line is the ceiling of a server running\n"
        "  h2 as it comes)",
        flush=True,
    )


def codec_floor(iterations: int, codec: str = "ngh2") -> float | None:
    """Microseconds of ``codec``'s server-side work per request, ten GETs per read (bench/codecs.py); None if absent."""
    from bench.codec_adapters import ADAPTERS
    from bench.codecs import time_workload

    adapter = ADAPTERS[codec]
    if adapter.unavailable():
        return None
    return min(time_workload(adapter, "batch10", max(iterations, 2000)) for _ in range(3))


def print_codec_floor(values: list[float], codec: str = "ngh2") -> None:
    """The chosen native codec's floor beside h2's: what the codec seam could leave to the rest of the server."""
    if not values:
        print(f"  ({codec} floor: {codec} is not installed)")
        return
    us = statistics.median(values)
    print(
        f"  {codec} floor, server side (the recommended native codec, bench/codecs.py batch10, {codec} "
        f"{module_version(codec)}):\n"
        f"                                 {us:7.2f} us/request -> ceiling {1e6 / us:9,.0f} req/s",
        flush=True,
    )
