"""Every private name of a dependency h2gate relies on, checked once at import.

Theory of operation. h2gate reaches past the public API of h2, hpack,
pyOpenSSL and asyncio in a few places, for speed (framing DATA and HEADERS
without h2's frame objects, reusing HPACK work, moving TLS bytes without a
copy, turning an asyncio loop one step at a time) or to change a rule h2
hard-codes (RFC 9113 stream errors h2 makes connection errors). Each such
place lives in this package and asks :data:`PROBES` whether the names it
needs are there; when one is not, that place falls back to the public API
(h2's own path, a copy, h2's own check) and h2gate keeps working, slower or
stricter. ``tests/internals/test_probes.py`` fails naming the internal that
changed, so an upgrade that silently turns a fallback on is seen at once.
"""

from __future__ import annotations

import asyncio.base_events
from collections.abc import Callable

import h2.connection
import h2.stream
import hpack


def _h2_lean_data() -> bool:
    probe = h2.connection.H2Connection()
    return (
        isinstance(getattr(probe, "_data_to_send", None), bytearray)
        and "outbound_flow_control_window" in h2.stream.H2Stream.__init__.__code__.co_names
        and "headers_sent" in h2.stream.H2StreamStateMachine.__init__.__code__.co_names
    )


def _hpack_tables() -> bool:
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    return (
        hasattr(encoder.header_table, "dynamic_entries")
        and hasattr(encoder.header_table, "resized")
        and hasattr(decoder, "max_allowed_table_size")
    )


def _h2_method(name: str) -> Callable[[], bool]:
    return lambda: callable(getattr(h2.connection.H2Connection, name, None))


def _h2_stream_methods() -> bool:
    return all(
        callable(getattr(h2.stream.H2Stream, name, None))
        for name in ("_track_content_length", "_initialize_content_length")
    )


def _h2_settings_layout() -> bool:
    import collections

    import h2.settings

    settings = h2.settings.Settings(client=False)
    stacks = vars(settings).get("_settings")
    return (
        isinstance(stacks, dict)
        and all(isinstance(stack, collections.deque) for stack in stacks.values())
        and "_client" in vars(settings)
        and callable(getattr(h2.settings, "_validate_setting", None))
    )


def _h2_dispatch_table() -> bool:
    conn = h2.connection.H2Connection()
    table = getattr(conn, "_frame_dispatch_table", None)
    return (
        isinstance(table, dict)
        and all(getattr(method, "__self__", None) is conn for method in table.values())
        and "_frame_dispatch_table" in h2.connection.H2Connection._receive_frame.__code__.co_names
    )


def _h2_inbound_windows() -> bool:
    probe = h2.connection.H2Connection()
    manager = getattr(probe, "_inbound_flow_control_window_manager", None)
    return (
        all(hasattr(manager, name) for name in ("max_window_size", "current_window_size"))
        and "_inbound_window_manager" in h2.stream.H2Stream.__init__.__code__.co_names
    )


def _openssl_util() -> bool:
    try:
        from OpenSSL._util import ffi, lib  # noqa: F401
    except ImportError:
        return False
    return all(hasattr(lib, name) for name in ("BIO_read", "X509_verify_cert_error_string"))


def _openssl_from_ssl_bio() -> bool:
    from OpenSSL import SSL

    return "_from_ssl" in SSL.Connection.bio_read.__code__.co_names


def _openssl_bio_pair() -> bool:
    from OpenSSL import SSL

    return (
        "_into_ssl" in SSL.Connection.bio_write.__code__.co_names
        and "_from_ssl" in SSL.Connection.bio_read.__code__.co_names
        and "_ssl" in SSL.Connection.bio_read.__code__.co_names + SSL.Connection.recv.__code__.co_names
    )


def _openssl_direct_read() -> bool:
    from OpenSSL import SSL
    from OpenSSL._util import lib

    names = ("BIO_write", "BIO_get_mem_data", "SSL_read", "SSL_get_error")
    return callable(getattr(SSL.Connection, "_raise_ssl_error", None)) and all(hasattr(lib, n) for n in names)


def _asyncio_run_once_selects() -> bool:
    run_once = getattr(asyncio.base_events.BaseEventLoop, "_run_once", None)
    return run_once is not None and "select" in run_once.__code__.co_names


def _asyncio_call_soon_ready() -> bool:
    base = asyncio.base_events.BaseEventLoop
    outer = set(base.call_soon.__code__.co_names)
    inner = set(base._call_soon.__code__.co_names)  # type: ignore[attr-defined]
    return (
        {"_check_closed", "_debug", "_call_soon"} <= outer
        and {"Handle", "_ready", "append"} <= inner
        and "_ready" in base.__init__.__code__.co_names
    )


H2_LEAN = "h2.lean_framing"
H2_UNKNOWN_FRAME = "h2.receive_unknown_frame"
H2_DATA_ON_CLOSED = "h2.handle_data_on_closed_stream"
H2_NEW_STREAM = "h2.begin_new_stream"
H2_CONTENT_LENGTH = "h2.stream_content_length"
H2_GOAWAY = "h2.receive_goaway_frame"
H2_SETTINGS = "h2.settings_layout"
H2_DISPATCH = "h2.frame_dispatch_table"
H2_INBOUND_WINDOWS = "h2.inbound_window_managers"
HPACK_TABLES = "hpack.tables"
OPENSSL_UTIL = "pyopenssl.util"
OPENSSL_READ_BIO = "pyopenssl.from_ssl"
OPENSSL_BIO_PAIR = "pyopenssl.bio_pair"
OPENSSL_RAISE = "pyopenssl.direct_read"
ASYNCIO_RUN_ONCE = "asyncio.run_once_selects"
ASYNCIO_READY = "asyncio.call_soon_ready"

#: Each internal: what it is (in words, for the test that names it) and how to tell it is still there.
CHECKS: dict[str, tuple[str, Callable[[], bool]]] = {
    H2_LEAN: ("h2: H2Connection._data_to_send, H2Stream window and headers_sent", _h2_lean_data),
    H2_UNKNOWN_FRAME: ("h2: H2Connection._receive_unknown_frame", _h2_method("_receive_unknown_frame")),
    H2_DATA_ON_CLOSED: ("h2: H2Connection._handle_data_on_closed_stream", _h2_method("_handle_data_on_closed_stream")),
    H2_NEW_STREAM: ("h2: H2Connection._begin_new_stream", _h2_method("_begin_new_stream")),
    H2_CONTENT_LENGTH: ("h2: H2Stream._track_content_length, _initialize_content_length", _h2_stream_methods),
    H2_GOAWAY: ("h2: H2Connection._receive_goaway_frame", _h2_method("_receive_goaway_frame")),
    H2_SETTINGS: ("h2: Settings._settings (deques), _client, h2.settings._validate_setting", _h2_settings_layout),
    H2_DISPATCH: ("h2: H2Connection._frame_dispatch_table (bound methods), read by _receive_frame", _h2_dispatch_table),
    H2_INBOUND_WINDOWS: (
        "h2: H2Connection._inbound_flow_control_window_manager, H2Stream._inbound_window_manager",
        _h2_inbound_windows,
    ),
    HPACK_TABLES: ("hpack: HeaderTable.dynamic_entries/resized, Decoder.max_allowed_table_size", _hpack_tables),
    OPENSSL_UTIL: ("pyOpenSSL: OpenSSL._util ffi and lib (BIO_read, X509_verify_cert_error_string)", _openssl_util),
    OPENSSL_READ_BIO: ("pyOpenSSL: Connection._from_ssl, the BIO bio_read drains", _openssl_from_ssl_bio),
    OPENSSL_BIO_PAIR: ("pyOpenSSL: Connection._ssl, _into_ssl and _from_ssl (its memory BIOs)", _openssl_bio_pair),
    OPENSSL_RAISE: (
        "pyOpenSSL: Connection._raise_ssl_error; OpenSSL._util SSL_read, SSL_get_error, BIO_write, BIO_get_mem_data",
        _openssl_direct_read,
    ),
    ASYNCIO_RUN_ONCE: ("asyncio: BaseEventLoop._run_once calls selector.select", _asyncio_run_once_selects),
    ASYNCIO_READY: (
        "asyncio: BaseEventLoop.call_soon = _check_closed, _debug, _call_soon (a Handle appended to _ready)",
        _asyncio_call_soon_ready,
    ),
}


def _run(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


#: The verdict of every check, taken once at import.
PROBES: dict[str, bool] = {name: _run(check) for name, (_, check) in CHECKS.items()}
