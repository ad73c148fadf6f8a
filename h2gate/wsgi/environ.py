"""The PEP 3333 environ for one HTTP/2 request."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from h2gate.net.transport import Transport
from h2gate.protocol.stream import Stream
from h2gate.tls.info import wsgi_tls_environ

#: Names whose values are joined with "; " rather than ", " when repeated (RFC 9113 §8.2.3).
_SEMICOLON_JOINED = frozenset({b"cookie"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def split_authority(authority: str) -> tuple[str, str | None]:
    """``host[:port]`` (IPv6 literals in brackets) → (host, port or None)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return authority, None


def build_environ(exchange: Stream, transport: Transport, root_path: str) -> dict[str, Any] | None:
    """The environ (without ``wsgi.input``/``wsgi.file_wrapper``), or None for a request without :path (CONNECT)."""
    head = exchange.head
    method, scheme, authority, raw = head.method, head.scheme, head.authority, head.target
    if not raw:
        return None
    fields: dict[bytes, list[bytes]] = {}
    for name, value in head.fields:
        fields.setdefault(name, []).append(value)
    raw_path, _, query = raw.partition(b"?")
    path = unquote_to_bytes(raw_path).decode("latin-1")
    script_name = root_path.rstrip("/")
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name) :]
    url_scheme = scheme.decode("latin-1") or transport.scheme
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method.decode("latin-1"),
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query.decode("latin-1"),
        "RAW_URI": raw.decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/2",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        # The client's trailer fields as (bytes, bytes) pairs: the list is filled in
        # place when they arrive, which is always before wsgi.input reads its end.
        "h2gate.request_trailers": exchange.trailers,
    }
    host: str = authority.decode("latin-1")
    if not host and b"host" in fields:
        host = fields[b"host"][0].decode("latin-1")
    if host:
        environ["HTTP_HOST"] = host
        server_name, port = split_authority(host)
        environ["SERVER_NAME"] = server_name
        environ["SERVER_PORT"] = port or _DEFAULT_PORTS.get(url_scheme, "")
    else:
        local = transport.local
        environ["SERVER_NAME"] = local[0] if local and local[1] is not None else "localhost"
        environ["SERVER_PORT"] = str(local[1]) if local and local[1] is not None else ""
    peer = transport.peer
    if peer and peer[1] is not None:
        environ["REMOTE_ADDR"] = peer[0]
        environ["REMOTE_PORT"] = str(peer[1])
    if transport.tls is not None:
        environ.update(wsgi_tls_environ(transport.tls))
    for name, values in fields.items():
        if 0x5F in name:  # "_" (an int needle: see h2gate.http.validate.has_bad_value_byte)
            # x_forwarded_for would collide with x-forwarded-for in the environ:
            # dropped, as nginx and Gunicorn do, so a client cannot spoof a proxy's header.
            continue
        joined = (b"; " if name in _SEMICOLON_JOINED else b", ").join(values).decode("latin-1")
        if name == b"content-type":
            environ["CONTENT_TYPE"] = joined
        elif name == b"content-length":
            environ["CONTENT_LENGTH"] = joined
        elif name != b"host" or "HTTP_HOST" not in environ:
            environ["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = joined
    return environ
