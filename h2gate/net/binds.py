"""Bind strings (``HOST:PORT``, ``[::1]:PORT``, ``unix:PATH``, ``fd://N``) and their sockets.

Sockets are opened synchronously before the event loop starts so that "port in
use" is a startup error with a clear line, and so a supervisor can hand them to
worker processes later.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass

from h2gate.errors import ConfigError, StartupError


@dataclass(frozen=True)
class Bind:
    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """Parse one bind string; raises ConfigError with the accepted forms."""
    forms = "expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"bad bind {text!r}: empty unix socket path")
        return Bind("unix", path=path)
    if text.startswith("fd://"):
        try:
            fd = int(text[5:])
        except ValueError:
            raise ConfigError(f"bad bind {text!r}: fd:// needs a file descriptor number") from None
        if fd < 0:
            raise ConfigError(f"bad bind {text!r}: negative file descriptor")
        return Bind("fd", fd=fd)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"bad bind {text!r}: {forms}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"bad bind {text!r}: {forms}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad bind {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad bind {text!r}: port must be 0-65535")
    return Bind("tcp", host=host or "0.0.0.0", port=port)


def reuse_port_supported() -> bool:
    """Whether this platform can put several listening TCP sockets on one address (Linux, the BSDs)."""
    return hasattr(socket, "SO_REUSEPORT")


def open_socket(bind: Bind, backlog: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Create, bind and listen; raises StartupError with the reason in words.

    ``reuse_port`` (TCP binds only) sets SO_REUSEPORT so that more sockets can
    bind the same address (:func:`open_reuse_port_twin`); ``listen=False``
    only reserves the address: a bound socket that does not listen takes no
    connections, so the kernel spreads them over the twins alone.
    """
    if bind.kind == "fd":
        try:
            sock = socket.socket(fileno=bind.fd)
        except OSError as exc:
            raise StartupError(f"cannot use {bind}: {exc.strerror or exc}") from None
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    if bind.kind == "unix":
        _remove_stale_unix_socket(bind.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: object = bind.path
    else:
        try:
            infos = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise StartupError(f"cannot bind {bind}: {exc.strerror}") from None
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(address)  # type: ignore[arg-type]
        if listen:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise StartupError(f"cannot bind {bind}: {reason}") from None
    sock.setblocking(False)
    return sock


def open_reuse_port_twin(reserved: socket.socket, backlog: int) -> socket.socket:
    """A new listening socket on the address of ``reserved`` (opened with ``reuse_port``). Raises OSError."""
    sock = socket.socket(reserved.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if reserved.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(reserved.getsockname())
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def open_sockets(bind_texts: list[str], backlog: int, *, reserve_tcp: bool = False) -> list[tuple[Bind, socket.socket]]:
    """Open every bind, closing the ones already open if a later one fails. Raises ConfigError, StartupError.

    ``reserve_tcp``: TCP binds are only reserved (SO_REUSEPORT, not listening), for
    :func:`open_reuse_port_twin` to add the sockets that accept.
    """
    binds = [parse_bind(b) for b in bind_texts]
    opened: list[tuple[Bind, socket.socket]] = []
    try:
        for bind in binds:
            reserve = reserve_tcp and bind.kind == "tcp"
            opened.append((bind, open_socket(bind, backlog, reuse_port=reserve, listen=not reserve)))
    except BaseException:
        close_sockets(opened)
        raise
    return opened


def close_sockets(opened: list[tuple[Bind, socket.socket]]) -> None:
    """Close sockets and remove the unix socket files we created.

    The paths come from the binds because a closed socket has no name; an
    fd:// socket's path belongs to whoever passed it in and is left alone.
    """
    for bind, sock in opened:
        sock.close()
        if bind.kind == "unix" and os.path.exists(bind.path):
            os.unlink(bind.path)


def _remove_stale_unix_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"cannot bind unix:{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"cannot bind unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens there: a leftover from an earlier run
    else:
        raise StartupError(f"cannot bind unix:{path}: address already in use")
    finally:
        probe.close()


def display_address(sock: socket.socket, tls: bool) -> str:
    """The URL-ish form printed at startup, e.g. ``https://127.0.0.1:8443``."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}" + (" (TLS)" if tls else " (h2c)")
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
