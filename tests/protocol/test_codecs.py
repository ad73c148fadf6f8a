"""Choosing the codec (``--codec``) and the raw-frame helpers the native codec relies on."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator

import pytest

from h2gate.errors import StartupError
from h2gate.protocol import codecs
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
