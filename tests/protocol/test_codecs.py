"""Choosing the codec (``--codec``) and the raw-frame helpers the native codec relies on."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator

import pytest

from h2gate.errors import StartupError
from h2gate.protocol import codecs
from h2gate.protocol.codec import Codec, LocalSettings
from h2gate.protocol.framecheck import PREFACE
from h2gate.protocol.h2codec import H2Codec
from h2gate.protocol.rawframes import FrameWalker, end_stream_frame, goaway_frame, ping_frame, rst_stream_frame
from tests.h2raw import split_frames


@pytest.fixture(autouse=True)
def _fresh_choice() -> Iterator[None]:
    yield
    codecs._factory.cache_clear()  # the choices made under a faked ngh2 are not the process's


def _installed(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    monkeypatch.setattr(codecs, "_ngh2_version", lambda: version)
    codecs._factory.cache_clear()


def test_without_ngh2_auto_is_h2_and_ngh2_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, None)
    assert codecs.resolve("auto") == "h2" and codecs.resolve("h2") == "h2"
    with pytest.raises(StartupError, match=r"--codec ngh2 needs the ngh2 package: pip install 'h2gate\[fast\]'"):
        codecs.resolve("ngh2")
    assert "pip install 'h2gate[fast]'" in codecs.describe("auto")
    assert isinstance(codecs.new_codec("auto"), H2Codec)


def test_auto_takes_only_a_tested_ngh2(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, "0.3.7")
    assert codecs.resolve("auto") == "ngh2" and codecs.resolve("h2") == "h2"
    _installed(monkeypatch, "0.4.0")
    assert codecs.resolve("auto") == "h2"
    assert codecs.resolve("ngh2") == "ngh2"  # asked for explicitly: served, and the banner says untested
    assert "untested" in codecs.describe("ngh2") and "untested" in codecs.describe("auto")


def test_frame_walker_finds_every_header_however_the_reads_split() -> None:
    frames = [ping_frame(b"12345678"), rst_stream_frame(3, 8), goaway_frame(1, 0, b"x" * 100), end_stream_frame(5)]
    frames *= 4
    blob = PREFACE + b"".join(frames)
    expected = [(f[3], f[4], int.from_bytes(f[5:9], "big")) for f in frames]
    rng = random.Random(22)
    for _ in range(100):
        walker, seen, pos = FrameWalker(len(PREFACE)), [], 0
        while pos < len(blob):
            size = rng.randint(1, 40)
            read = memoryview(blob[pos : pos + size])
            for offset, kind, flags, sid in walker.heads(read):
                assert 0 <= offset < len(read)
                seen.append((kind, flags, sid))
            pos += size
        assert seen == expected


@pytest.mark.skipif(importlib.util.find_spec("ngh2") is None, reason="ngh2 is not installed")
def test_ngh2_after_the_final_goaway_every_command_still_has_an_answer() -> None:
    """Once our final GOAWAY is out and no stream is left, libnghttp2 refuses every call ("terminating").

    A WSGI app's reset arriving then took the connection down with a traceback.
    """
    import h2.config
    import h2.connection

    from h2gate.protocol.codec import LocalSettings, StreamGone
    from h2gate.protocol.ngh2codec import Ngh2Codec

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    codec = Ngh2Codec()
    codec.initiate(LocalSettings(10, 65_535, 65_535, 65_536, 16_384, False))
    codec.receive(client.data_to_send())
    client.receive_data(codec.data_to_send())
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], True)
    codec.receive(client.data_to_send())
    codec.send_headers(1, [(b":status", b"200")], True)
    codec.goaway(1, 0)
    codec.reset(1, 8)  # goes out raw
    codec.ping(b"12345678")
    codec.acknowledge(1, 10)
    with pytest.raises(StreamGone):
        codec.window(1)
    assert not codec.is_open(1) and codec.inbound_window == 0 and codec.max_frame_size == 16_384
    frames, _ = split_frames(codec.data_to_send())
    assert [type(f).__name__ for f in frames][-3:] == ["GoAwayFrame", "RstStreamFrame", "PingFrame"]
    client.send_headers(3, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], True)
    assert codec.receive(client.data_to_send()) == []  # past the final GOAWAY: nothing more to serve


def _codec(name: str) -> Codec:
    if name == "h2":
        return H2Codec()
    from h2gate.protocol.ngh2codec import Ngh2Codec

    return Ngh2Codec()


@pytest.mark.parametrize(
    "name",
    ["h2", pytest.param("ngh2", marks=pytest.mark.skipif(importlib.util.find_spec("ngh2") is None, reason="no ngh2"))],
)
def test_windows_and_order_while_frames_wait_to_be_taken(name: str) -> None:
    """The native codec frames once per batch: until then window() already counts the queued DATA.

    Both codecs answer the same: the windows as the client will see them, every frame in the order
    the commands were given (a raw frame between two streams' responses included), a stream closed
    by its END_STREAM before anyone took the bytes.
    """
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    codec = _codec(name)
    codec.initiate(LocalSettings(10, 65_535, 65_535, 65_536, 16_384, False))
    codec.receive(client.data_to_send())
    client.receive_data(codec.data_to_send())
    request = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")]
    for sid in (1, 3, 5):
        client.send_headers(sid, request, end_stream=True)
    codec.receive(client.data_to_send())
    assert codec.window(1) == codec.window(3) == 65_535
    codec.send_headers(1, [(b":status", b"200")], False)
    codec.send_data(1, b"a" * 1000, False)
    assert codec.window(1) == 64_535 and codec.window(3) == 64_535  # the connection's window counts it too
    codec.write_raw(ping_frame(b"rawframe"))
    codec.send_headers(3, [(b":status", b"204")], True)
    codec.send_headers(5, [(b":status", b"200")], False)
    codec.send_data(5, b"b" * 500, True)
    assert codec.window(1) == 64_035
    assert codec.is_open(1) and not codec.is_open(3) and not codec.is_open(5)
    codec.send_data(1, b"c" * 10, True)
    events = client.receive_data(codec.data_to_send())
    seen = [(type(e).__name__, getattr(e, "stream_id", None)) for e in events if type(e) is not h2.events.StreamEnded]
    assert seen == [
        ("ResponseReceived", 1), ("DataReceived", 1), ("PingReceived", None), ("ResponseReceived", 3),
        ("ResponseReceived", 5), ("DataReceived", 5), ("DataReceived", 1),
    ]  # fmt: skip
    assert client.inbound_flow_control_window == 65_535 - 1510  # what window() said was charged, and no more
