"""WSGI backpressure both ways: ~100 MB up through a slow app, ~100 MB down to a slow client.

Peak server RSS must stay far below the bytes moved: the request body is
acknowledged only as the app reads ``wsgi.input``, and each yielded chunk holds
its thread until it fits in the client's window.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import h2.settings
import pytest

from h2gate.wsgi.pool import BEHIND_BYTES
from tests.h2raw import RawH2
from tests.protocol.test_flow_control import MB, rss_bytes
from tests.wsgi.test_wsgi import STRICT, VALIDATED, problems

TOTAL = 100 * MB
RSS_BOUND = 40 * MB


@pytest.mark.timeout(60)
def test_upload_through_slow_app_is_bounded(serve) -> None:
    window = 65_535
    flags = ["--initial-window-size", str(window), "--connection-window-size", str(window), "--no-access-log"]
    flags += ["--max-window-size", "0", "--max-connection-window-size", "0"]  # fixed windows: the bound below
    server = serve(*VALIDATED, *flags, env=STRICT)
    block = os.urandom(MB)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        assert client.get("/environ").status == 200
        assert client.remote_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == window
        baseline = peak = rss_bytes(server.proc.pid)
        sid = client.request("POST", f"/upload?key={key}", end_stream=False)
        digest, sent, probes = hashlib.sha256(), 0, []
        next_probe = 5 * MB
        deadline = time.monotonic() + 40
        while sent < TOTAL:
            assert time.monotonic() < deadline, f"upload stalled at {sent}"
            offset = sent % MB
            piece = memoryview(block)[offset : offset + min(MB - offset, TOTAL - sent)]
            n = client.send_body(sid, piece)
            if n:
                digest.update(piece[:n])
                sent += n
                continue
            if sent >= next_probe:  # blocked on window: how far ahead of the app are we?
                next_probe += 10 * MB
                done = int(client.get(f"/progress?key={key}").header(b"x-done"))
                probes.append((sent, done))
                peak = max(peak, rss_bytes(server.proc.pid))
                continue
            client.pump(0.2)
        client.h2.end_stream(sid)
        client.flush()
        result = client.response(sid, timeout=30)
        peak = max(peak, rss_bytes(server.proc.pid))
    assert result.status == 200, result.data
    assert json.loads(result.data) == {"length": TOTAL, "sha256": digest.hexdigest()}
    assert len(probes) >= 5, probes
    for sent_then, done in probes:
        # The client got ahead of the app by at most: the window (in flight or unread in the
        # exchange), what wsgi.input holds back from its last refill (< one window) and the
        # app's current read of 64 KiB (taken but not yet counted).
        assert 0 <= sent_then - done <= 2 * window + 65_536, (sent_then, done)
    assert peak - baseline < RSS_BOUND, (baseline, peak)
    assert problems(server.output) == []


@pytest.mark.timeout(60)
def test_download_to_slow_client_blocks_the_app(serve) -> None:
    server = serve(*VALIDATED, "--no-access-log", env=STRICT)
    window = 65_535  # the client's default windows
    chunk = 65_536
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        warm = client.get("/environ")
        client.ack(warm.stream_id)
        baseline = peak = rss_bytes(server.proc.pid)
        sid = client.request("GET", f"/download?key={key}&size={TOTAL}&chunk={chunk}", keep_data=False)
        stream = client.streams[sid]
        probes = []
        next_probe = 5 * MB
        deadline = time.monotonic() + 40
        while not stream.done:
            assert time.monotonic() < deadline, f"download stalled at {stream.received}"
            client.pump(0.2)
            if stream.done or client.h2.remote_flow_control_window(sid) > 0:
                continue
            if stream.received >= next_probe:
                next_probe += 10 * MB
                probe = client.get(f"/progress?key={key}")
                client.ack(probe.stream_id)
                probes.append((stream.received, int(probe.header(b"x-done"))))
                peak = max(peak, rss_bytes(server.proc.pid))
            client.ack(sid, window // 2)  # a slow reader: half a window at a time
        peak = max(peak, rss_bytes(server.proc.pid))
    assert stream.ended and stream.status == 200
    assert stream.received == TOTAL
    assert len(probes) >= 5, probes
    for received, app_sent in probes:
        # the app's generator is held back: at most one chunk plus what a thread may hand
        # over without waiting (BEHIND_BYTES) ahead of what we allowed
        assert app_sent <= received + window + BEHIND_BYTES + chunk, (received, app_sent)
    assert peak - baseline < RSS_BOUND, (baseline, peak)
    server.wait_for_log(f"wsgi-app: {key} closed")
    assert problems(server.output) == []
