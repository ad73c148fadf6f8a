"""What each HTTP/2 codec candidate enforces by itself: the same hostile or odd bytes to each, and its reaction.

Run:  python bench/codecs.py --probes [--codecs h2,ngh2,zttp]

Each probe opens a fresh server connection (bench/codec_adapters.py), feeds
the client's preface and SETTINGS, then the probe's bytes, and prints what the
codec did: the events it gave (``request 1``, ``reset 3 code 1``), or what it
raised, and the frames it queued in answer (``GOAWAY 11``, ``RST 1x3``,
``WINDOW_UPDATE x2``). Whatever a codec lets through is what the core would
have to check itself. Nothing is asserted: this is evidence for
bench/README.md ("Choosing a native codec").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from bench.codec_adapters import ADAPTERS
from bench.codecs import client_start, settings_ack

GET = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"example.test")]


def headers(fields: list[tuple[bytes, bytes]], stream_id: int = 1, end_stream: bool = True) -> bytes:
    """One HEADERS frame (split into CONTINUATION frames past 16 KiB), HPACK without any normalisation."""
    block = Encoder().encode(fields)
    first, rest = block[:16384], block[16384:]
    frame = HeadersFrame(stream_id, first)
    if end_stream:
        frame.flags.add("END_STREAM")
    out = []
    if not rest:
        frame.flags.add("END_HEADERS")
    out.append(frame.serialize())
    while rest:
        chunk, rest = rest[:16384], rest[16384:]
        cont = ContinuationFrame(stream_id, chunk)
        if not rest:
            cont.flags.add("END_HEADERS")
        out.append(cont.serialize())
    return b"".join(out)


def data(stream_id: int, size: int, end_stream: bool = False) -> bytes:
    out = []
    while size > 0:
        n = min(size, 16384)
        frame = DataFrame(stream_id, b"x" * n)
        size -= n
        if end_stream and size == 0:
            frame.flags.add("END_STREAM")
        out.append(frame.serialize())
    return b"".join(out)


def continuation_flood(count: int) -> bytes:
    first = HeadersFrame(1, Encoder().encode(GET))
    first.flags.add("END_STREAM")  # no END_HEADERS: CONTINUATION frames must follow, and never end
    return first.serialize() + ContinuationFrame(1, b"").serialize() * count


def rapid_reset(count: int) -> bytes:
    encoder, out = Encoder(), []
    for i in range(count):
        sid = 2 * i + 1
        frame = HeadersFrame(sid, encoder.encode(GET))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        out.append(frame.serialize() + RstStreamFrame(sid, error_code=8).serialize())
    return b"".join(out)


def raw_frame(kind: int, stream_id: int, body: bytes) -> bytes:
    """A frame of any type, built by hand (hyperframe's ExtensionFrame serializes a length of 0)."""
    return len(body).to_bytes(3, "big") + bytes((kind, 0)) + stream_id.to_bytes(4, "big") + body


def priority_update() -> bytes:
    return headers(GET) + raw_frame(0x10, 0, (1).to_bytes(4, "big") + b"u=0, i")


POST = [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"example.test")]
PROBES: dict[str, Callable[[], bytes]] = {
    "plain GET": lambda: headers(GET),
    "header list 70 KB (limit 64 KiB)": lambda: headers([*GET, (b"x-big", b"v" * 70_000)]),
    "CONTINUATION flood (10,000 empty)": lambda: continuation_flood(10_000),
    "rapid reset (2,000 HEADERS+RST)": lambda: rapid_reset(2_000),
    "PING flood (10,000, output unread)": lambda: PingFrame(0, b"12345678").serialize() * 10_000,
    "SETTINGS flood (10,000, unread)": lambda: SettingsFrame(0).serialize() * 10_000,
    "8.2.1 uppercase name": lambda: headers([*GET, (b"User-Agent", b"x")]),
    "8.2.1 connection: keep-alive": lambda: headers([*GET, (b"connection", b"keep-alive")]),
    "8.2.1 te: gzip": lambda: headers([*GET, (b"te", b"gzip")]),
    "8.2.1 value with CR LF": lambda: headers([*GET, (b"x-a", b"a\r\nb: c")]),
    "8.2.1 value with NUL": lambda: headers([*GET, (b"x-a", b"a\x00b")]),
    "8.2.1 value leading space": lambda: headers([*GET, (b"x-a", b" a")]),
    "8.3 pseudo after regular": lambda: headers([*GET[:3], (b"x-a", b"1"), GET[3]]),
    "8.3 missing :path": lambda: headers([f for f in GET if f[0] != b":path"]),
    "8.3 duplicate :method": lambda: headers([*GET, (b":method", b"GET")]),
    "8.1.1 content-length 10, 5 sent": lambda: (
        headers([*POST, (b"content-length", b"10")], end_stream=False) + data(1, 5, end_stream=True)
    ),
    "RFC 8441 extended CONNECT": lambda: headers(
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]], end_stream=False
    ),
    "RFC 9218 PRIORITY_UPDATE": priority_update,
    "unknown frame type 0xfa": lambda: raw_frame(0xFA, 0, b"hello") + headers(GET),
    "60 KB body, never acknowledged": lambda: headers(POST, end_stream=False) + data(1, 60_000),
    "70 KB body (connection window 65,535)": lambda: headers(POST, end_stream=False) + data(1, 70_000),
    "client GOAWAY then a new stream": lambda: GoAwayFrame(0, 0, 0).serialize() + headers(GET, stream_id=3),
}


def answer(out: bytes) -> str:
    """The frames a codec queued, in words: GOAWAY and RST_STREAM with their codes, counts of the rest."""
    view, counts = memoryview(out), Counter[str]()
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        view = view[9 + length :]
        name = type(frame).__name__.removesuffix("Frame")
        if isinstance(frame, GoAwayFrame):
            counts[f"GOAWAY {frame.error_code}"] += 1
        elif isinstance(frame, RstStreamFrame):
            counts[f"RST {frame.error_code}"] += 1
        elif isinstance(frame, SettingsFrame | PingFrame):
            counts[f"{name}{' ACK' if 'ACK' in frame.flags else ''}"] += 1
        else:
            counts[{"WindowUpdate": "WINDOW_UPDATE"}.get(name, name.upper())] += 1
    return ", ".join(f"{k}" if v == 1 else f"{k} x{v}" for k, v in counts.items()) or "nothing"


def summary(words: list[str]) -> str:
    """Events counted by kind, the stream id dropped: ``request x1000; reset code 8 x1000``."""
    counts = Counter(re.sub(r"^(then )?(\w+) \d+\b", r"\1\2", w) for w in words)
    return "; ".join(w if n == 1 else f"{w} x{n}" for w, n in counts.items()) or "no event"


def main(codecs: list[str]) -> int:
    start = client_start() + settings_ack()
    for name in codecs:
        adapter = ADAPTERS[name]
        if why := adapter.unavailable():
            print(f"== {name}: skipped: {why}")
            continue
        print(f"== {name}")
        for probe, build in PROBES.items():
            conn = adapter.new()
            adapter.events(conn, start)
            conn.data_to_send()
            words = adapter.events(conn, build())
            try:
                sent = answer(conn.data_to_send())
            except Exception as exc:  # a codec that raised may refuse to hand out bytes too
                sent = f"data_to_send raised {type(exc).__name__}"
            if name == "ngh2" and not any(w.startswith("raised") for w in words):
                # ngh2 reports a stream it reset itself only once the RST_STREAM was taken for sending
                words += [f"then {type(e).__name__.lower()} code {e.error_code}" for e in conn.events()]
            print(f"  {probe:<38} events: {summary(words)[:110]}\n  {'':<38} sent:   {sent}")
    return 0
