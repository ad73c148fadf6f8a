"""One small adapter per HTTP/2 codec candidate, so bench/codecs.py feeds them all the same bytes.

Each adapter makes a server-side connection that advertises the same SETTINGS
(h2gate's defaults: 100 streams, 256 KiB stream window, 64 KiB header list,
extended CONNECT on), and offers two things:

* ``serve(conn, data) -> bytes``: the timed path. Receive ``data``, answer
  every request in it with ``:status 200`` + three fields and the 13-byte
  body (END_STREAM), return what the codec wants to send. Written as each
  library is meant to be used, with nothing the others do not also do.
* ``events(conn, data) -> list[str]``: the probe path (bench/codec_probes.py).
  Receive ``data`` and describe what came out, one short word per event
  (``request 1``, ``reset 3 code 8``, ``settings``, ...); an exception is
  caught and described as ``raised Name: message``.

A codec whose package is missing is skipped by the callers with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.servers import HELLO

STREAMS, STREAM_WINDOW, HEADER_LIST = 100, 262_144, 65_536
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"13"), (b"server", b"bench")]
RESPONSE_WITH_STATUS = [(b":status", b"200"), *RESPONSE]


@dataclass(frozen=True)
class Adapter:
    name: str
    module: str  # the distribution to import (and whose version is shown)
    what: str  # one line: what it is
    new: Callable[[], Any]
    serve: Callable[[Any, bytes], bytes]
    events: Callable[[Any, bytes], list[str]]

    def unavailable(self) -> str | None:
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed (pip install -e '.[bench]')"
        return None


def _described(call: Callable[[], list[str]]) -> list[str]:
    try:
        return call()
    except Exception as exc:  # the probes want to see what each codec raises
        text = "".join(c if c.isprintable() else "?" for c in str(exc))
        return [f"raised {type(exc).__name__}: {text[:90]}"]


# --------------------------------------------------------------------------- h2 and jh2 (same API)


def _h2_like(package: str) -> tuple[Callable[[], Any], Callable[[Any, bytes], bytes], Callable[[Any, bytes], list]]:
    def new() -> Any:
        config = importlib.import_module(f"{package}.config")
        connection = importlib.import_module(f"{package}.connection")
        settings = importlib.import_module(f"{package}.settings")
        conn = connection.H2Connection(config.H2Configuration(client_side=False, header_encoding=None))
        codes = settings.SettingCodes
        conn.local_settings = settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: STREAMS,
                codes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                codes.MAX_HEADER_LIST_SIZE: HEADER_LIST,
                codes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        conn.initiate_connection()
        conn.data_to_send()
        return conn

    events_mod = importlib.import_module(f"{package}.events") if importlib.util.find_spec(package) else None

    def serve(conn: Any, data: bytes) -> bytes:
        request = events_mod.RequestReceived  # type: ignore[union-attr]
        for event in conn.receive_data(data):
            if isinstance(event, request):
                sid = event.stream_id
                conn.send_headers(sid, RESPONSE_WITH_STATUS)
                conn.send_data(sid, HELLO, end_stream=True)
        return conn.data_to_send()

    def events(conn: Any, data: bytes) -> list[str]:
        def run() -> list[str]:
            out = []
            for event in conn.receive_data(data):
                out.append(_h2_word(event))
            return out

        return _described(run)

    return new, serve, events


def _h2_word(event: Any) -> str:
    name = type(event).__name__
    if name == "RequestReceived":
        return f"request {event.stream_id}"
    if name == "StreamReset":
        return f"reset {event.stream_id} code {int(event.error_code)}"
    if name == "ConnectionTerminated":
        return f"terminated code {int(event.error_code)}"
    if name == "DataReceived":
        return f"data {event.stream_id} {event.flow_controlled_length}"
    if name == "UnknownFrameReceived":
        return f"unknown frame 0x{event.frame.type:x}"
    return name.removesuffix("Received").lower()


# --------------------------------------------------------------------------- h2 as h2gate drives it


def _seam_settings() -> Any:
    from h2gate.protocol.codec import LocalSettings

    return LocalSettings(
        max_concurrent_streams=STREAMS,
        initial_window_size=STREAM_WINDOW,
        connection_window_size=1 << 20,
        max_header_list_size=HEADER_LIST,
        max_frame_size=16_384,
        enable_connect_protocol=True,
    )


def _h2gate_new() -> Any:
    """h2 behind h2gate's own codec seam (h2gate/protocol/h2codec.py): lean HEADERS and DATA, HPACK reuse."""
    from h2gate.protocol.h2codec import H2Codec

    codec = H2Codec()
    codec.initiate(_seam_settings())
    codec.data_to_send()
    return codec


def _ngh2gate_new() -> Any:
    """ngh2 behind h2gate's codec seam (h2gate/protocol/ngh2codec.py), as ``--codec ngh2`` serves."""
    from h2gate.protocol.ngh2codec import Ngh2Codec

    codec = Ngh2Codec()
    codec.initiate(_seam_settings())
    codec.data_to_send()
    return codec


def _h2gate_serve(codec: Any, data: bytes) -> bytes:
    from h2gate.protocol.codec import RequestReceived

    for event in codec.receive(data):
        if type(event) is RequestReceived:
            sid = event.stream_id
            codec.send_headers(sid, RESPONSE_WITH_STATUS, False)
            codec.send_data(sid, HELLO, True)
    return codec.data_to_send()


def _seam_words(codec: Any, data: bytes) -> list[str]:
    """A codec behind a seam: its events by class name (``RequestReceived``, ``StreamProtocolError``...)."""
    return _described(lambda: [type(e).__name__ for e in codec.receive(data)])


# --------------------------------------------------------------------------- ngh2 (libnghttp2)


def _ngh2_new() -> Any:
    import ngh2

    conn = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
    conn.initiate_connection(
        {
            ngh2.Setting.MAX_CONCURRENT_STREAMS: STREAMS,
            ngh2.Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            ngh2.Setting.MAX_HEADER_LIST_SIZE: HEADER_LIST,
            ngh2.Setting.ENABLE_CONNECT_PROTOCOL: 1,
        }
    )
    conn.data_to_send()
    return conn


def _ngh2_serve(conn: Any, data: bytes) -> bytes:
    from ngh2 import RequestReceived

    conn.receive_data(data)
    for event in conn.events():
        if type(event) is RequestReceived:
            sid = event.stream_id
            conn.send_response(sid, RESPONSE_WITH_STATUS)
            conn.send_data(sid, HELLO, end_stream=True)
    return conn.data_to_send()


def _ngh2_events(conn: Any, data: bytes) -> list[str]:
    def run() -> list[str]:
        conn.receive_data(data)
        words = []
        for event in conn.events():
            name = type(event).__name__
            if name == "RequestReceived":
                words.append(f"request {event.stream_id}")
            elif name in ("StreamReset", "StreamClosed"):
                words.append(f"{name.lower()} {event.stream_id} code {event.error_code}")
            elif name == "ConnectionClosed":
                words.append(f"closed code {event.error_code}")
            elif name == "DataReceived":
                words.append(f"data {event.stream_id} {len(event.data)}")
            elif name == "PriorityUpdateReceived":
                words.append(f"priority_update {event.prioritized_stream_id}")
            else:
                words.append(name.removesuffix("Received").lower())
        return words

    return _described(run)


# --------------------------------------------------------------------------- zttp (Zig)


def _zttp_new() -> Any:
    import zttp

    conn = zttp.Connection(zttp.SERVER, zttp.HTTP2)  # no way to choose our SETTINGS: zttp's own go out
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def _zttp_serve(conn: Any, data: bytes) -> bytes:
    import zttp

    need, request = zttp.NEED_DATA, zttp.Request
    conn.receive_data(data)
    while (event := conn.next_event()) is not need:
        if type(event) is request:
            stream = conn.stream(event.stream_id)
            stream.send_response(200, RESPONSE)
            stream.send_data(HELLO)
            stream.end_message()
    return conn.data_to_send()


def _zttp_events(conn: Any, data: bytes) -> list[str]:
    import zttp

    def run() -> list[str]:
        conn.receive_data(data)
        words = []
        while (event := conn.next_event()) is not zttp.NEED_DATA:
            if event is zttp.CONNECTION_CLOSED:
                words.append("closed")
                break
            name = type(event).__name__
            if name == "Request":
                words.append(f"request {event.stream_id}")
            elif name == "RstStream":
                words.append(f"reset {event.stream_id} code {event.error_code}")
            elif name == "GoAway":
                words.append(f"goaway code {event.error_code}")
            elif name == "Data":
                words.append(f"data {event.stream_id} {len(event.data)}")
            else:
                words.append(name.lower())
        return words

    return _described(run)


# --------------------------------------------------------------------------- rh2 (Rust h2 crate)


def _rh2_new() -> Any:
    import rh2

    conn = rh2.H2Connection()  # no way to choose our SETTINGS either
    conn.data_to_send()
    return conn


def _rh2_serve(conn: Any, data: bytes) -> bytes:
    from rh2 import RequestReceived

    for event in conn.receive_data(data):
        if type(event) is RequestReceived:
            sid = event.stream_id
            conn.send_headers(sid, 200, RESPONSE)
            conn.send_data(sid, HELLO, end_stream=True)
    return conn.data_to_send()


def _rh2_events(conn: Any, data: bytes) -> list[str]:
    def run() -> list[str]:
        words = []
        for event in conn.receive_data(data):
            name = type(event).__name__
            if name == "RequestReceived":
                words.append(f"request {event.stream_id}")
            elif name == "StreamReset":
                words.append(f"reset {event.stream_id} code {event.error_code}")
            else:
                words.append(name.lower())
        return words

    return _described(run)


_H2 = _h2_like("h2")
_JH2 = _h2_like("jh2")
ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("h2", "h2", "pure Python (python-hyper), h2gate's codec today", *_H2),
        Adapter(
            "h2+h2gate",
            "h2",
            "h2 behind h2gate's codec seam (protocol/h2codec.py: lean HEADERS/DATA, HPACK reuse)",
            _h2gate_new,
            _h2gate_serve,
            _seam_words,
        ),
        Adapter("jh2", "jh2", "h2 fork with a Rust HPACK (jawah)", *_JH2),
        Adapter("ngh2", "ngh2", "libnghttp2 through Cython (MIT)", _ngh2_new, _ngh2_serve, _ngh2_events),
        Adapter(
            "ngh2+h2gate",
            "ngh2",
            "ngh2 behind h2gate's codec seam (protocol/ngh2codec.py, --codec ngh2)",
            _ngh2gate_new,
            _h2gate_serve,
            _seam_words,
        ),
        Adapter("zttp", "zttp", "Zig HTTP/1.1, 2, 3 codec (Uvicorn's)", _zttp_new, _zttp_serve, _zttp_events),
        Adapter("rh2", "rh2", "Rust h2 crate through PyO3", _rh2_new, _rh2_serve, _rh2_events),
    )
}
