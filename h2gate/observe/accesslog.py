"""The access log line: ``--access-log-format`` atoms and the structured fields of JSON logs.

Theory of operation: the format string is compiled once at startup into a list
of literal text and atom getters (:class:`AccessFormat`), so an unknown atom
is a startup error naming it, and each request pays only for the atoms the
format uses. Atoms follow Gunicorn's names (``%(h)s``, ``%(r)s``,
``%({name}i)s``, ...) where one exists; ``%(peer)s``, ``%(stream)s``,
``%(status)s``, ``%(alpn)s``, ``%(scheme)s`` and ``%(tls)s`` are ours. Every
atom is written ``%(name)s``; ``%%`` is a literal percent sign.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from h2gate.config.values import format_tokens

if TYPE_CHECKING:
    from h2gate.net.transport import Transport
    from h2gate.protocol.stream import Stream

#: Today's line: ``127.0.0.1:50312 - "GET /x HTTP/2" 200 5 0.001s stream=1``.
DEFAULT_FORMAT = '%(peer)s - "%(r)s" %(status)s %(B)s %(L)ss stream=%(stream)s'


class Entry:
    """One finished exchange, as the atoms read it."""

    __slots__ = ("duration", "exchange", "scope", "transport")

    def __init__(self, transport: Transport, scope: Any, exchange: Stream, duration: float) -> None:
        self.transport = transport
        self.scope = scope
        self.exchange = exchange
        self.duration = duration

    @property
    def method(self) -> str:
        return self.scope["method"] if self.scope else "-"

    @property
    def path(self) -> str:
        return self.scope["raw_path"].decode("latin-1") if self.scope else "-"

    @property
    def query(self) -> str:
        return self.scope["query_string"].decode("latin-1") if self.scope else ""

    @property
    def target(self) -> str:
        query = self.query
        return f"{self.path}?{query}" if query else self.path

    @property
    def host(self) -> str:
        peer = self.transport.peer
        return str(peer[0]) if peer and peer[1] is not None else "-"

    @property
    def peer(self) -> str:
        peer = self.transport.peer
        return f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "-"

    @property
    def status(self) -> str:
        return str(self.exchange.status or "-")

    @property
    def outcome(self) -> str:
        """The status, with " reset" when the stream was reset before the response ended.

        " cut" instead when the server's shutdown cut it at --graceful-timeout.
        """
        exchange = self.exchange
        if exchange.cut:
            return f"{self.status} cut"
        if exchange.reset_code is not None and not exchange.response_ended:
            return f"{self.status} reset"
        return self.status

    def request_header(self, name: bytes) -> str:
        if name == b"host" and self.exchange.head.authority:
            return self.exchange.head.authority.decode("latin-1")
        values = [v for n, v in self.exchange.head.fields if n == name]
        return b", ".join(values).decode("latin-1") if values else "-"

    def response_header(self, name: bytes) -> str:
        values = [v for n, v in self.exchange.response_headers if n == name]
        return b", ".join(values).decode("latin-1") if values else "-"

    def fields(self) -> dict[str, Any]:
        """The structured fields of a JSON access line."""
        peer = self.transport.peer
        tls = self.transport.tls
        exchange = self.exchange
        return {
            "remote_addr": peer[0] if peer and peer[1] is not None else None,
            "remote_port": peer[1] if peer else None,
            "method": self.method if self.scope else None,
            "path": self.path if self.scope else None,
            "query": self.query,
            "protocol": "HTTP/2",
            "status": exchange.status or None,
            "reset": exchange.reset_code is not None and not exchange.response_ended,
            "cut": exchange.cut,
            "bytes_sent": exchange.bytes_sent,
            "duration_s": round(self.duration, 6),
            "stream": exchange.stream_id,
            "scheme": self.transport.scheme,
            "alpn": self.transport.alpn,
            "tls_version": tls.tls_version if tls is not None else None,
            "referer": self.request_header(b"referer"),
            "user_agent": self.request_header(b"user-agent"),
        }


def _tls(entry: Entry) -> str:
    tls = entry.transport.tls
    return tls.tls_version if tls is not None and tls.tls_version else "-"


ATOMS: dict[str, Callable[[Entry], str]] = {
    "h": lambda e: e.host,
    "l": lambda e: "-",
    "u": lambda e: "-",
    "t": lambda e: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda e: f"{e.method} {e.target} HTTP/2",
    "m": lambda e: e.method,
    "U": lambda e: e.path,
    "q": lambda e: e.query,
    "H": lambda e: "HTTP/2",
    "s": lambda e: e.status,
    "B": lambda e: str(e.exchange.bytes_sent),
    "b": lambda e: str(e.exchange.bytes_sent) if e.exchange.bytes_sent else "-",
    "f": lambda e: e.request_header(b"referer"),
    "a": lambda e: e.request_header(b"user-agent"),
    "T": lambda e: str(int(e.duration)),
    "D": lambda e: str(int(e.duration * 1_000_000)),
    "M": lambda e: str(int(e.duration * 1000)),
    "L": lambda e: seconds_text(e.duration),
    "p": lambda e: f"<{os.getpid()}>",
    "peer": lambda e: e.peer,
    "status": lambda e: e.outcome,
    "stream": lambda e: str(e.exchange.stream_id),
    "alpn": lambda e: e.transport.alpn or "-",
    "scheme": lambda e: e.transport.scheme,
    "tls": _tls,
}


def _header_atom(name: bytes, side: str) -> Callable[[Entry], str]:
    if side == "i":
        return lambda e: e.request_header(name)
    return lambda e: e.response_header(name)


#: ``str(status)`` for every status code, looked up rather than converted per line.
_STATUS_TEXT: Final = {code: str(code) for code in range(100, 600)}
#: ``"host:port"`` of recent peers (a connection's many lines format its address once), cleared when full.
_peer_text: Final[dict[Any, str]] = {}  # (Final: compiled, a C static rather than a module-dict lookup)
_PEER_TEXT_MAX = 4096


def _peer(peer: Any) -> str:
    """The ``%(peer)s`` text of a peer address, remembered for the connection's next lines."""
    text = f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "-"
    if len(_peer_text) >= _PEER_TEXT_MAX:
        _peer_text.clear()  # (bounded: a flood of one-request connections never grows it)
    _peer_text[peer] = text
    return text


#: ``"0.000"`` to ``"0.999"``: the ``%(L)s`` text of every request under a second, looked up, not formatted.
_SUBSECOND = tuple(["0.%03d" % ms for ms in range(1000)])  # noqa: UP031


def seconds_text(duration: float) -> str:
    """``duration`` in seconds with three decimals (``%(L)s``), rounded half up to the millisecond.

    Nearly every request takes under a second, so its text comes from a table:
    formatting a float cost 130 ns compiled, the lookup 12 (bench/README.md,
    "Round six: the access line").
    """
    ms = int(duration * 1000.0 + 0.5)
    if 0 <= ms < 1000:
        return _SUBSECOND[ms]
    return "%.3f" % duration  # noqa: UP031 (compiled, %-format is the quick one: 190 against 260 ns)


def default_line(transport: Transport, scope: Any, exchange: Stream, duration: float, prefix: str = "") -> str:
    """``prefix`` then :data:`DEFAULT_FORMAT`'s line, without an :class:`Entry` or a call per atom.

    The default's fast path, once per request: one f-string for the whole line with
    the time prefix in it, the peer's, the status's and the duration's text looked
    up. Must equal ``AccessFormat().line(Entry(...))`` for every input
    (``tests/observe/test_access_log.py`` compares them).

    Written for mypyc, which compiles it: the scope's values are given their types
    (so ``bytes.decode("latin-1")`` becomes a direct call, not a method lookup),
    and no format spec sits inside an f-string (one made the whole line about
    three times slower to build). Compiled, the line takes 320 ns against 634
    before (bench/README.md, "Round six: the access line").
    """
    peer = transport.peer
    who = _peer_text.get(peer) or _peer(peer)
    status = exchange.status
    outcome = _STATUS_TEXT.get(status) or str(status or "-")  # type: ignore[call-overload]
    if exchange.cut:
        outcome += " cut"
    elif exchange.reset_code is not None and not exchange.response_ended:
        outcome += " reset"
    took = seconds_text(duration)
    if not scope:
        request = "- -"
    else:
        method: str = scope["method"]
        raw: bytes = scope["raw_path"]
        query: bytes = scope["query_string"]
        if query:
            request = f"{method} {raw.decode('latin-1')}?{query.decode('latin-1')}"
        else:  # the common case: no query, one f-string for the whole line
            return (
                f'{prefix}{who} - "{method} {raw.decode("latin-1")} HTTP/2" {outcome} '
                f"{exchange.bytes_sent} {took}s stream={exchange.stream_id}"
            )
    sent, stream_id = exchange.bytes_sent, exchange.stream_id
    return f'{prefix}{who} - "{request} HTTP/2" {outcome} {sent} {took}s stream={stream_id}'


class AccessFormat:
    """A compiled ``--access-log-format``. Raises ConfigError naming an unknown atom."""

    def __init__(self, fmt: str = DEFAULT_FORMAT) -> None:
        self.text = fmt
        self.parts: list[str | Callable[[Entry], str]] = []
        for token in format_tokens(fmt):
            if isinstance(token, str):
                self.parts.append(token)
            elif len(token) == 1:
                self.parts.append(ATOMS[token[0]])
            else:
                self.parts.append(_header_atom(*token))
        # Compiled once: the literal text becomes a %-template (its own % doubled), the atoms a tuple of
        # getters, so a line is one list of atom values and one % (no per-part isinstance or join).
        self._template = "".join(p.replace("%", "%%") if isinstance(p, str) else "%s" for p in self.parts)
        self._getters = tuple(p for p in self.parts if not isinstance(p, str))
        #: The same line straight from (transport, scope, exchange, duration, prefix), for the default format.
        self.direct: Callable[[Transport, Any, Stream, float, str], str] | None = (
            default_line if fmt == DEFAULT_FORMAT else None
        )

    def line(self, entry: Entry) -> str:
        return self._template % tuple([get(entry) for get in self._getters])
