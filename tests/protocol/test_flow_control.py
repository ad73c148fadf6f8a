"""Flow control end to end: a raw h2 client against the real server, with the app reporting what it saw.

The client is :class:`tests.h2raw.RawH2`. Also home of :func:`rss_bytes` and
:func:`no_errors`, which the other protocol-loop tests share.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import h2.settings
import pytest

from tests.apps.flow import random_chunks
from tests.h2raw import RawH2

MB = 1024 * 1024
LOOPS = ["trio", "asyncio"]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def no_errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if "[ERROR]" in line or "Traceback" in line]


# -- request bodies: the server buffers at most what its windows advertise -------------------------


FIXED = ["--max-window-size", "0", "--max-connection-window-size", "0"]  # adaptive flow control off


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("loop", "windows"), [("trio", "small"), ("asyncio", "small"), ("asyncio", "default"), ("trio", "adaptive")]
)
def test_slow_app_upload_is_bounded_by_windows(serve, loop: str, windows: str) -> None:
    """The bytes a client got to send beyond what the app read never exceed the window we advertised.

    ``adaptive``: the windows may grow (the client answers our PINGs and the app
    reads fast between its pauses), but never past their caps.
    """
    if windows == "small":
        window = 65_535  # stream and connection window: the tightest bound the protocol allows
        flags = ["--initial-window-size", str(window), "--connection-window-size", str(window), *FIXED]
    elif windows == "default":
        window = 262_144  # the default stream window (the 1 MiB connection window is not the limit here)
        flags = FIXED
    else:
        window = 2 * MB  # the caps: from 64 KiB (stream) and 1 MiB (connection) up to 2 MiB each
        flags = ["--initial-window-size", "65535", "--max-window-size", str(window)]
        flags += ["--max-connection-window-size", str(window)]
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log", *flags)
    pid = server.proc.pid
    total = 50 * MB
    block = os.urandom(MB)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        assert client.get("/hello").data == b"hello"
        initial = 262_144 if windows == "default" else 65_535
        assert client.remote_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == initial
        baseline = rss_bytes(pid)
        sid = client.request("POST", f"/upload?key={key}&sleep_every=4&sleep=0.002", end_stream=False)
        digest = hashlib.sha256()
        sent = 0
        probes: list[tuple[int, int, int]] = []  # (sent, consumed, max_chunk) while the client was blocked
        peak_rss = baseline
        next_probe = 2 * MB
        deadline = time.monotonic() + 40
        while sent < total:
            assert time.monotonic() < deadline, f"upload stalled at {sent} bytes"
            offset = sent % MB
            piece = memoryview(block)[offset : offset + min(MB - offset, total - sent)]
            n = client.send_body(sid, piece)
            if n:
                digest.update(piece[:n])
                sent += n
                continue
            # Blocked: the client has used every byte of window the server granted.
            if sent >= next_probe:
                next_probe += 5 * MB
                probe = client.get(f"/progress?key={key}")
                probes.append((sent, int(probe.header(b"x-consumed")), int(probe.header(b"x-max-chunk"))))
                peak_rss = max(peak_rss, rss_bytes(pid))
                continue
            client.pump(0.5)
        client.h2.end_stream(sid)
        client.flush()
        result = client.response(sid, timeout=30)
        peak_rss = max(peak_rss, rss_bytes(pid))

    assert result.status == 200, result.data
    assert json.loads(result.data) == {"length": total, "sha256": digest.hexdigest()}
    assert len(probes) >= 8, probes
    for sent_then, consumed, max_chunk in probes:
        # Bytes the client got to send beyond what the app took: only the advertised window
        # (plus, under asyncio, at most one receive() that was acknowledged but not yet counted).
        assert max_chunk <= window
        assert 0 <= sent_then - consumed <= window + max_chunk, (sent_then, consumed, max_chunk)
    # The app really was the bottleneck: at some probe the window was (nearly) full of unread bytes.
    # (Adaptive: of its initial 64 KiB at least. How far it grows on loopback depends on how the app's
    # pace compares with a round trip of a fraction of a millisecond; tests/protocol/test_long_path.py
    # shows the growth over a 50 ms path, and test_adaptive_windows.py without a socket.)
    assert max(s - c for s, c, _ in probes) > (65_535 if windows == "adaptive" else window) // 4, probes
    assert peak_rss - baseline < 40 * MB, (baseline, peak_rss)


# -- response bodies: send() blocks while the client does not read --------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", LOOPS)
def test_slow_client_download_blocks_app_send(serve, loop: str) -> None:
    server = serve("apps.flow:app", "--loop", loop, "--no-access-log")
    pid = server.proc.pid
    total, chunk, seed = 50 * MB, 65_536, 7
    window = 65_535  # the client's (default) stream and connection receive windows
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        warm = client.get("/hello")
        client.ack(warm.stream_id)
        baseline = rss_bytes(pid)
        sid = client.request("GET", f"/download?key={key}&size={total}&chunk={chunk}&seed={seed}")
        stream = client.streams[sid]
        digest = hashlib.sha256()
        hashed = 0
        probes: list[tuple[int, int, int]] = []  # (received, app sent, sends)
        peak_rss = baseline
        next_probe = 1 * MB
        deadline = time.monotonic() + 45
        while not stream.done:
            assert time.monotonic() < deadline, f"download stalled at {stream.received} bytes"
            client.pump(0.5)
            if stream.data:
                digest.update(stream.data)
                hashed += len(stream.data)
                stream.data.clear()
            if stream.done or client.h2.remote_flow_control_window(sid) > 0:
                continue  # the server may still send: wait until it has filled our window
            if stream.received >= next_probe:
                next_probe += 5 * MB
                if len(probes) == 2:
                    time.sleep(0.3)  # a really slow reader: the app must stay blocked meanwhile
                probe = client.get(f"/progress?key={key}")
                client.ack(probe.stream_id)
                probes.append((stream.received, int(probe.header(b"x-sent")), int(probe.header(b"x-sends"))))
                peak_rss = max(peak_rss, rss_bytes(pid))
            # Read in small bites: hand back a quarter of the window at a time.
            client.ack(sid, window // 4)
        peak_rss = max(peak_rss, rss_bytes(pid))

    assert stream.ended and stream.status == 200, (stream.headers, stream.reset)
    assert hashed == total == stream.received
    expected = hashlib.sha256()
    for piece in random_chunks(seed, total, chunk):
        expected.update(piece)
    assert digest.hexdigest() == expected.hexdigest()
    assert len(probes) >= 8, probes
    for received, app_sent, _sends in probes:
        # send() returned only for bytes that fit in the window we granted: the app is held back.
        assert received - chunk <= app_sent <= received + window, (received, app_sent)
        assert app_sent < total
    assert peak_rss - baseline < 40 * MB, (baseline, peak_rss)
    server.wait_for_log(f"flow-app: {key} download complete")


# -- client resets ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
def test_reset_while_app_waits_for_body(serve, loop: str) -> None:
    server = serve("apps.flow:app", "--loop", loop)
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sid = client.request("POST", f"/wait-body?key={key}", body=b"x" * 1000, end_stream=False)
        server.wait_for_log(f"flow-app: {key} received 1000 bytes")
        client.reset(sid)
        server.wait_for_log(f"flow-app: {key} got http.disconnect after 1000 bytes")
        # The connection is still good for more requests.
        again = client.get("/hello")
        assert again.status == 200 and again.data == b"hello"
        assert not client.goaways and not client.eof
        server.wait_for_log(rf'"POST /wait-body\?key={key} HTTP/2" .*stream={sid}')
    assert no_errors(server.output) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("on_error", ["raise", "return"])
@pytest.mark.parametrize("loop", LOOPS)
def test_reset_while_app_blocked_in_send(serve, loop: str, on_error: str) -> None:
    server = serve("apps.flow:app", "--loop", loop)
    key = uuid.uuid4().hex
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/download?key={key}&size={50 * MB}&on_error={on_error}", keep_data=False)
        stream = client.streams[sid]
        client.wait_for(lambda: stream.received >= 65_535, what="a full window of response body")
        probe = client.get(f"/progress?key={key}")
        assert int(probe.header(b"x-sent")) < 50 * MB  # the app is stuck in send()
        client.reset(sid)
        line = server.wait_for_log(f"flow-app: {key} send failed")
        assert "oserror=True" in line
        client.ack(sid)  # give back the connection window the reset stream's bytes used
        again = client.get("/hello")
        assert again.status == 200 and again.data == b"hello"
        # The stream's access log line comes after anything the server logs about the stream.
        server.wait_for_log(rf'"GET /download\?key={key}\S* HTTP/2" .*stream={sid}')
    assert no_errors(server.output) == []
