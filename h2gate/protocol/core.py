"""The protocol core of one connection: bytes in, decisions and bytes out, no I/O.

Theory of operation. :class:`ConnectionCore` owns everything about one HTTP/2
connection that is not a socket or a task: the codec (behind
:mod:`h2gate.protocol.codec`), the stream table, the connection's phase
(:mod:`h2gate.protocol.lifecycle`), the attack budgets
(:mod:`h2gate.protocol.guards`) and the deadlines
(:mod:`h2gate.protocol.timeouts`). It is driven by three calls, none of
which waits:

* :meth:`receive` with the bytes the client sent;
* :meth:`on_timer` when :attr:`deadlines` says one is due;
* :meth:`drain` / :meth:`shutdown` / :meth:`lost` when the server or the
  transport says so;

and it answers through its state: :meth:`data_to_send` holds the bytes to
write, ``spawn(stream)`` was called for every request to run, and
:attr:`ended` is set once the connection is CLOSED. Every RST_STREAM we send
goes through :meth:`reset_stream` and every GOAWAY through the phase changes
of :mod:`h2gate.protocol.closing`, each with one log line that says what the
client did in words; the driver (:mod:`h2gate.protocol.driver`) only moves
bytes and runs tasks.

The class is three modules in one line of bases, all on one set of state
(made here, in ``__init__``). This module holds the receiving side: the
per-request path (a request's HEADERS → the validated head → a
:class:`~h2gate.protocol.stream.Stream` → ``spawn``, pushed requests too) and
the events of one stream (DATA, its end, trailers, resets, windows). Its base
class :class:`~h2gate.protocol.output.ConnectionOutput` holds the output: the
one reset path, a stream's end, the acknowledgements, what the writer takes.
Whatever concerns the connection as a whole (control frames, closing and
shutdown, the timers, the adaptive windows' sizes) is the base below that,
:class:`~h2gate.protocol.control.ConnectionControl`.

Stream objects (:mod:`h2gate.protocol.stream`) are the core's other half: the
app's side of each exchange, calling back into the core to send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from h2gate.config import Config
from h2gate.errors import ConnectionProtocolError, ErrorCode, code_name
from h2gate.http.head import Headers
from h2gate.http.validate import parse_request, trailer_problem
from h2gate.observe import metrics
from h2gate.protocol import codec as ev
from h2gate.protocol.closing import Closing
from h2gate.protocol.codec import Codec, LocalSettings, StreamGone
from h2gate.protocol.codecs import new_codec
from h2gate.protocol.control import HANDSHAKE, HEADER_BLOCK, IDLE
from h2gate.protocol.flowcontrol import ReceiveWindows
from h2gate.protocol.framecheck import FrameCheck, StreamProblem
from h2gate.protocol.guards import HEADER_BLOCK_MARGIN, Guards
from h2gate.protocol.lifecycle import Phase
from h2gate.protocol.output import ConnectionOutput
from h2gate.protocol.priority import SendTurns
from h2gate.protocol.signal import Signal
from h2gate.protocol.stream import Stream
from h2gate.protocol.stream_state import State
from h2gate.protocol.timeouts import Deadlines

log = logging.getLogger("h2gate.error")
_CLOSED = Phase.CLOSED


class ConnectionCore(ConnectionOutput):
    """One connection's protocol state and decisions (see the module docstring)."""

    # Slots: thousands of these sit idle at once (bench/README.md, "Idle connection memory"). The three
    # fields ConnectionOutput writes have their slots there.
    __slots__ = (
        "__weakref__", "_receiving", "_spawn", "clock", "closing", "codec", "config", "deadlines", "drained",
        "extended_connect", "frame_tap", "frames", "guards", "on_closed", "peer", "requests",
        "scheme",
        "send_timeout", "streams_changed", "turns", "wake", "windows",
    )  # fmt: skip

    def __init__(
        self,
        config: Config,
        *,
        peer: str,
        scheme: str,
        spawn: Callable[[Stream], None],
        wake: Callable[[], None],
        clock: Callable[[], float] = trio.current_time,
        codec: Codec | None = None,
        extended_connect: bool = True,
        upgraded: bool = False,
    ) -> None:
        self.config = config
        self.peer = peer  # who the client is, for log lines
        self.scheme = scheme  # the transport's: "https" or "http"
        self._spawn = spawn
        self.wake = wake  # the writer has something to send
        self.clock = clock
        self.codec: Codec = codec if codec is not None else new_codec(config.codec)
        self.extended_connect = extended_connect
        self.streams: dict[int, Stream] = {}
        self.turns = SendTurns()  # RFC 9218 send order of this connection's streams
        self.deadlines = Deadlines()
        self.guards = Guards(config)
        self.frames = FrameCheck(
            upgraded=upgraded,
            max_header_block=config.max_header_list_size + HEADER_BLOCK_MARGIN,
            max_frame_size=config.max_frame_size,
        )
        self.send_timeout = config.send_timeout
        self.queued = 0  # DATA bytes queued since the writer last took the output
        self.queued_frames = 0  # DATA frames among them (at most): each may earn the client two WINDOW_UPDATEs
        self.drained = Signal()  # the writer took the output and wrote it (or the connection is gone)
        self.streams_changed = Signal()
        self.requests = 0
        self._receiving = False  # a read is being dispatched (a drain waits for its requests)
        self.closing = Closing(
            self.codec, self.deadlines, peer=peer, wake=wake, clock=clock, is_idle=self._idle,
            on_closed=self._lose_streams, upgraded=upgraded,
        )  # fmt: skip
        self.frame_tap: Callable[[ConnectionCore, ev.Event], None] | None = None  # --enable-frame-api
        self.on_closed: Callable[[], None] | None = None  # the driver's: the connection is CLOSED
        #: Adaptive receive windows, made when a body first could use them (h2gate.protocol.flowcontrol).
        self.windows: ReceiveWindows | None = None

    # -- state others read ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """No more frames will be produced: nothing more an app sends reaches the client."""
        return self.closing.lifecycle.phase is Phase.CLOSED

    @property
    def push_allowed(self) -> bool:
        return not self.closed and self.codec.peer_allows_push

    @property
    def open_streams(self) -> int:
        """Streams whose app still runs (the server's connection limit counts a connection without any as idle)."""
        return len(self.streams)

    def start(self, upgrade: tuple[Headers, bytes] | None = None, upgrade_settings: bytes | None = None) -> None:
        """Queue our preface; ``upgrade``: the h2c Upgrade request (headers, body), served as stream 1."""
        config = self.config
        self.codec.initiate(
            LocalSettings(
                max_concurrent_streams=config.max_concurrent_streams,
                initial_window_size=config.initial_window_size,
                connection_window_size=config.connection_window_size,
                max_header_list_size=config.max_header_list_size,
                max_frame_size=config.max_frame_size,
                enable_connect_protocol=self.extended_connect,
            ),
            upgrade_settings,
        )
        self.deadlines.arm(HANDSHAKE, self.clock() + config.handshake_timeout)
        if upgrade is not None:
            # Its body arrived before the switch, outside HTTP/2 flow control: nothing to acknowledge.
            headers, body = upgrade
            stream = Stream(self, 1, headers, request_ended=False)
            if body:
                stream._on_data(body, 0)
            stream._on_end()
            self._admit(stream)
        self.wake()

    # -- receiving ------------------------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray) -> None:
        """Take the client's bytes; after CLOSED they are read and dropped (the driver lingers)."""
        if self.closed:
            return
        pieces, problem = self.frames.feed(data)
        if problem is not None:
            self.fail(problem[0], problem[1])
            return
        flood = self.guards.frames_read(self.frames, self.clock())
        if flood is not None:
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, flood)
            return
        self._time_header_block()
        self._receiving = True  # a strict client's drain waits for the requests of this read
        try:
            self._dispatch(pieces)
        finally:
            self._receiving = False
        self.closing.idle()
        self.wake()

    def _dispatch(self, pieces: list[bytes | bytearray | memoryview | StreamProblem]) -> None:
        for piece in pieces:
            if isinstance(piece, StreamProblem):
                self._stream_problem(piece)
                continue
            try:
                events = self.codec.receive(piece)
            except ConnectionProtocolError as exc:
                self.fail(exc.code, exc.reason, kind="protocol error")
                return
            lifecycle = self.closing.lifecycle
            for event in events:
                _DISPATCH[type(event)](self, event)
                if self.frame_tap is not None:
                    self.frame_tap(self, event)
                if lifecycle.phase is _CLOSED:  # self.closed, without the property call per event
                    return

    def _time_header_block(self) -> None:
        if not self.frames.in_header_block:
            self.deadlines.disarm(HEADER_BLOCK)
        elif not self.deadlines.armed(HEADER_BLOCK):
            self.deadlines.arm(HEADER_BLOCK, self.clock() + self.config.header_timeout)

    def _stream_problem(self, problem: StreamProblem) -> None:
        """A stream error FrameCheck found (and dropped the frame of)."""
        if problem.headers:  # the codec still decodes the (rewritten) HEADERS: refuse it then
            self.guards.header_depends_on_itself(problem.stream_id)
            return
        self.reset_stream(problem.stream_id, problem.code, f"stream error: {problem.reason}", charge=True)

    def _on_request(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        closing = self.closing
        if stream_id > closing.highest:
            closing.highest = stream_id
        if stream_id > closing.last_stream_id and not closing.lifecycle.accepting:  # (the cheap test first)
            # Sent before our final GOAWAY arrived; the client retries it (RFC 9113 §6.8).
            # Ignored as nghttp2 does: a reset read along with the GOAWAY fails it in httpx.
            log.debug("stream %d from %s after the final GOAWAY: ignored", stream_id, self.peer)
            return
        if stream_id in self.guards.bad_headers:
            self.guards.bad_headers.discard(stream_id)
            self._malformed(stream_id, "HEADERS depends on its own stream (RFC 9113 §5.3.1)")
            return
        limit = self.config.max_concurrent_streams
        if len(self.streams) >= limit and self._open_in_codec() >= limit:
            why = f"refused, over SETTINGS_MAX_CONCURRENT_STREAMS {limit}"
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, why, charge=True)
            return
        head = parse_request(event.headers, ended=event.ended)  # validated and split in one pass
        if isinstance(head, str):
            self._malformed(stream_id, head)
            return
        stream = Stream(self, stream_id, event.headers, request_ended=event.ended, head=head)
        if not event.ended:
            declared = self.guards.body_lengths.expect(stream_id, event.headers)
            if self.guards.body_sizes.too_large(declared):
                self.guards.body_sizes.refuse(stream_id)
                stream.too_large = True
                log.info(
                    "request body of %s bytes from %s on stream %d is over --max-body-size %d (413)",
                    declared,
                    self.peer,
                    stream_id,
                    self.guards.body_sizes.limit,
                )
            else:
                if self.config.body_timeout and stream.head.method != b"CONNECT":
                    self.deadlines.arm(stream_id, stream.last_activity + self.config.body_timeout)
                self._track_body(stream_id, declared)
        self._admit(stream)

    def _track_body(self, stream_id: int, declared: int | None) -> None:
        """A body that could outgrow the initial window gets an adaptive one (h2gate.protocol.flowcontrol)."""
        config = self.config
        limit = config.max_window_size
        if declared is not None:
            limit = min(limit, declared)
        if config.max_body_size:
            limit = min(limit, config.max_body_size)
        if limit <= config.initial_window_size:
            return
        windows = self.windows
        if windows is None:
            windows = self.windows = ReceiveWindows(
                stream_initial=config.initial_window_size,
                stream_max=config.max_window_size,
                connection_initial=config.connection_window_size,
                connection_max=config.max_connection_window_size,
            )
        size = windows.track(stream_id, limit, self.clock())
        if size is not None:
            self._resize([(stream_id, size)])

    def _open_in_codec(self) -> int:
        """Client streams we accepted that are still open in the codec (pushed ones count against the client)."""
        is_open = self.codec.is_open
        return sum(1 for sid in self.streams if sid % 2 and is_open(sid))

    def _admit(self, stream: Stream) -> None:
        self.streams[stream.stream_id] = stream
        self.requests += 1
        self.deadlines.disarm(IDLE)
        metrics.recorder.stream_opened()
        self._spawn(stream)

    def _on_data(self, event: ev.DataReceived) -> None:
        stream_id, size = event.stream_id, len(event.data)
        guards = self.guards
        problem = guards.body_lengths.data(stream_id, size)
        if problem is not None:
            self.codec.acknowledge(stream_id, event.flow_length)
            self._malformed(stream_id, problem)
            return
        if guards.body_sizes.add(stream_id, size):
            self.codec.acknowledge(stream_id, event.flow_length)
            why = f"request body grew past --max-body-size {guards.body_sizes.limit}"
            self.reset_stream(stream_id, ErrorCode.CANCEL, why)
            return
        stream = self.streams.get(stream_id)
        if stream is None or stream.reset_code is not None:
            self.codec.acknowledge(stream_id, event.flow_length)  # nobody will read these bytes
            return
        stream._on_data(event.data, event.flow_length)
        windows = self.windows
        if windows is not None and stream_id in windows and self.closing.phase is Phase.OPEN:
            ping = windows.ping_due(self.clock())  # a body flows: measure the round trip and what it carries
            if ping is not None:
                self.codec.ping(ping)

    def _on_stream_ended(self, event: ev.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.state.request is State.ENDED:
            return  # admitted with its END_STREAM (a GET): no body was counted or given a window
        if self.windows is not None:
            self.windows.forget(event.stream_id)
        problem = self.guards.body_lengths.end(event.stream_id)
        if problem is not None:
            self._malformed(event.stream_id, problem)
            return
        if stream is not None:
            stream._on_end()

    def _on_trailers(self, event: ev.TrailersReceived) -> None:
        if event.stream_id in self.guards.bad_headers:
            self.guards.bad_headers.discard(event.stream_id)
            self._malformed(event.stream_id, "HEADERS depends on its own stream (RFC 9113 §5.3.1)")
            return
        problem = trailer_problem(event.headers)
        if problem is not None:
            self._malformed(event.stream_id, problem)
            return
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream._on_trailers(event.headers)

    def _on_reset(self, event: ev.StreamReset) -> None:
        metrics.recorder.stream_reset("client", event.code)
        self._forget(event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.reset_code is None:
            log.debug("client reset stream %d (%s)", event.stream_id, code_name(event.code))
            stream._on_reset(event.code)
            stream.cancel_app_soon()
        self._charge_reset()

    def _on_codec_stream_error(self, event: ev.StreamProtocolError) -> None:
        # The codec has answered it with RST_STREAM already.
        what = "malformed request" if event.malformed else "stream error"
        name = code_name(event.code)
        log.info("stream %d from %s: %s: %s (RST_STREAM %s)", event.stream_id, self.peer, what, event.reason, name)
        metrics.recorder.stream_reset("server", event.code)
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.reset_code is None:
            stream._on_reset(event.code)
            stream.cancel_app_soon()
        self._charge_reset()

    def _on_window(self, event: ev.WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_window()
        else:
            for stream in self.streams.values():
                stream._on_window()

    def _malformed(self, stream_id: int, problem: str) -> None:
        """A malformed request or trailer section: RST_STREAM PROTOCOL_ERROR (RFC 9113 §8.1.1)."""
        self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR, f"malformed request: {problem}", charge=True)

    # -- pushed streams ---------------------------------------------------------------------------------------

    def push(self, stream: Stream, headers: Headers) -> bool:
        """Promise ``headers`` on ``stream`` and serve the promised request; False if it cannot be pushed now."""
        if self.closed or not self.codec.peer_allows_push:
            return False
        try:
            promised = self.codec.push(stream.stream_id, headers)
        except StreamGone as exc:
            log.debug("stream %d: push skipped: %s", stream.stream_id, exc.__cause__ or "the stream is closed")
            return False
        self._admit(Stream(self, promised, headers, request_ended=True))
        self.wake()
        return True


_DISPATCH: dict[type, Callable[[ConnectionCore, Any], None]] = {
    ev.RequestReceived: ConnectionCore._on_request,
    ev.DataReceived: ConnectionCore._on_data,
    ev.StreamEnded: ConnectionCore._on_stream_ended,
    ev.TrailersReceived: ConnectionCore._on_trailers,
    ev.StreamReset: ConnectionCore._on_reset,
    ev.StreamProtocolError: ConnectionCore._on_codec_stream_error,
    ev.WindowUpdated: ConnectionCore._on_window,
    ev.SettingsReceived: ConnectionCore._on_settings,
    ev.PingReceived: ConnectionCore._on_ping,
    ev.PingAcked: ConnectionCore._on_ping_ack,
    ev.GoAwayReceived: ConnectionCore._on_goaway,
    ev.PriorityUpdated: ConnectionCore._on_priority_update,
}
