"""Error types, each saying who is to blame and what, if anything, goes on the wire.

* Startup: :class:`StartupError` and its kinds are raised below the CLI and
  printed by the CLI as one line; nothing below the CLI calls ``sys.exit``.
* The peer broke HTTP/2: :class:`ProtocolError` carries the RFC 9113 §7 code.
  A :class:`StreamError` becomes RST_STREAM on its stream, a
  :class:`ConnectionProtocolError` a GOAWAY that ends the connection. The reason is
  words for the log line, never a bare stream number.
* The app broke its interface (ASGI or WSGI): :class:`AppMistake`.
* The client went away: :class:`ClientDisconnected`, what an app's ``send()``
  / ``write()`` / ``wsgi.input.read()`` raises once its stream is reset or its
  connection is gone. It is an ``OSError``, as a lost socket would be.
* The peer stopped taking our bytes: :class:`SendTimeout`, raised by a send
  that still has to wait at its deadline (a ``trio.BrokenResourceError``).
* Our own stream bookkeeping was asked for a transition its table forbids:
  :class:`StreamStateError` (a bug in h2gate or an adapter, never the peer's).
"""

from __future__ import annotations

import enum

import trio


class ErrorCode(enum.IntEnum):
    """HTTP/2 error codes (RFC 9113 §7); equal to h2's ``ErrorCodes`` member for member."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD

    @classmethod
    def of(cls, code: int) -> ErrorCode | int:
        """The member for ``code``, or the bare number for codes RFC 9113 does not name (§7: not an error)."""
        try:
            return cls(code)
        except ValueError:
            return code


def code_name(code: int) -> str:
    """An error code as a log line shows it: its RFC name, or hex for an unknown one."""
    member = ErrorCode.of(code)
    return member.name if isinstance(member, ErrorCode) else f"0x{code:x}"


class StartupError(Exception):
    """The server cannot start; the message is one readable line for the user."""


class ConfigError(StartupError):
    """A configuration value (flag, env var, config file key) is invalid."""


class AppLoadError(StartupError):
    """The application named on the command line cannot be loaded."""


class ProtocolError(Exception):
    """The peer broke an HTTP/2 rule; ``code`` is what goes into RST_STREAM or GOAWAY."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StreamError(ProtocolError):
    """A stream error (RFC 9113 §5.4.2): RST_STREAM ``code`` on ``stream_id``, the connection lives on."""

    def __init__(self, stream_id: int, reason: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason, code)
        self.stream_id = stream_id


class ConnectionProtocolError(ProtocolError):
    """A connection error (RFC 9113 §5.4.1): GOAWAY ``code``, then the connection ends."""


class AppMistake(RuntimeError):
    """The app broke the ASGI or WSGI interface (a message or call the spec forbids); the text names it."""


class ClientDisconnected(OSError):
    """Raised to an app that reads or sends on a stream the client has reset or whose connection is gone."""


class StreamStateError(RuntimeError):
    """A stream was asked for a transition its state table forbids (h2gate.protocol.stream_state)."""


class SendTimeout(trio.BrokenResourceError):
    """The peer took too little of our bytes before the send deadline; the stream is broken now.

    A deadline costs nothing unless the send has to wait: a cancel scope is
    entered only around a wait for the socket (trio's deadlines are not free,
    and the writer sends far more often than it waits).
    """
