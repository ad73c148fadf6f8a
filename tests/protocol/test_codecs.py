"""Choosing the codec (``--codec``) and the raw-frame helpers the native codec relies on."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from h2gate.errors import StartupError
from h2gate.protocol import codecs
from h2gate.protocol.framecheck import PREFACE
from h2gate.protocol.h2codec import H2Codec
from h2gate.protocol.rawframes import FrameWalker, end_stream_frame, goaway_frame, ping_frame, rst_stream_frame


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
