"""Bulk transfers over a 50 ms round trip: the real server behind a delaying proxy, judged in bytes, not time.

This kernel has no netem qdisc, so the path is bench/delay.py's proxy: every
byte crosses it 25 ms late each way, at most 100 Mbit/s (12.5 MB/s, so the
pipe fills the same way on a slow or busy machine). The proxy counts the bytes
in flight on the path. With fixed windows an upload can never have more than
its stream window (256 KiB here, by default) in flight; a download never more
than the client's window. So the figures that show the transfers are not
window-bound are bytes: in flight well above a fixed window, and, for the
upload, the stream window the server granted.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import h2.settings
import pytest

from bench.delay import DelayProxy
from tests.apps.flow import random_chunks
from tests.h2raw import RawH2

KIB, MB = 1024, 1_000_000
SIZE = 20 * MB
RTT = 0.05
RATE = 12.5 * MB  # bytes a second each way: 100 Mbit/s
CLIENT_WINDOW = 1 << 30  # the client never holds a download back


class _Client(RawH2):
    """RawH2 whose writes may wait: pump() leaves a short read timeout on the socket, and a PING ACK or
    WINDOW_UPDATE it flushes can meet a full socket while the path's queue is full."""

    def flush(self) -> None:
        self.sock.settimeout(60)
        super().flush()


def _client(port: int) -> RawH2:
    client = _Client(port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: CLIENT_WINDOW}, timeout=60)
    client.h2.increment_flow_control_window(CLIENT_WINDOW - 65_535)
    client.flush()
    return client


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_upload_and_download_over_50ms_outgrow_fixed_windows(serve, loop: str) -> None:
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log")
    body = b"".join(random_chunks(7, SIZE, 1 << 20))
    with DelayProxy(server.port, RTT, RATE) as proxy:
        # -- upload: the server's windows must open well past their initial 256 KiB
        with _client(proxy.port) as client:
            initial = client.get("/hello")
            assert initial.status == 200
            stream_window = client.remote_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE]
            assert stream_window == 256 * KIB
            sid = client.request("POST", f"/upload?key={uuid.uuid4().hex}", end_stream=False)
            view, sent, widest = memoryview(body), 0, 0
            while sent < SIZE:  # bounded: each pass sends or waits up to 0.5s, within the test's timeout
                widest = max(widest, client.h2.streams[sid].outbound_flow_control_window)
                client.sock.settimeout(60)  # for send_body: pump() leaves its own short timeout
                n = client.send_body(sid, view[sent : sent + 1024 * KIB])
                sent += n
                client.pump(0.5 if n == 0 else 0.001)  # the server's WINDOW_UPDATEs
            client.h2.end_stream(sid)
            client.flush()
            answer = client.response(sid, timeout=60)
            assert answer.status == 200
            assert json.loads(answer.body) == {"length": SIZE, "sha256": hashlib.sha256(body).hexdigest()}
        up = proxy.pipes[-1][0]
        # -- download: the server's writer must keep more than a window's worth on the path
        with _client(proxy.port) as client:
            sid = client.request("GET", f"/download?key={uuid.uuid4().hex}&size={SIZE}&chunk=65536&seed=7")
            got = client.response(sid, timeout=60)
            assert got.status == 200 and got.body == body
        down = proxy.pipes[-1][1]
    # Fixed windows would cap what is in flight at 256 KiB (the stream window) for the upload.
    assert widest > 1024 * KIB, widest
    assert up.total >= SIZE and up.most > 768 * KIB, (up.total, up.most)
    # The client's window is 1 GiB; the path carries 1.25 MB per 100 ms of queue: the server kept it full.
    assert down.total >= SIZE and down.most > 768 * KIB, (down.total, down.most)
    assert server.proc.poll() is None
