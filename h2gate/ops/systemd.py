"""systemd integration without a systemd library: socket activation and ``sd_notify``.

Socket activation: systemd opens the listening sockets (``h2gate.socket``)
and starts us with them as file descriptors 3, 4, ... and the environment
``LISTEN_FDS=<count>``, ``LISTEN_PID=<our pid>`` and optionally
``LISTEN_FDNAMES=a:b``. The variables are only ours when ``LISTEN_PID`` is
our PID (a child that inherited the environment must not take them), and we
remove them once read so our own children never see them.

Notification: when ``NOTIFY_SOCKET`` is set, state lines such as
``READY=1`` are sent as one datagram to that unix socket (a name starting
with ``@`` is in the abstract namespace). Failures are logged at debug and
otherwise ignored: a missing notification must never stop the server.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

from h2gate.errors import StartupError

log = logging.getLogger("h2gate.error")

#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class ActivatedSocket:
    fd: int
    name: str


def listen_fds(environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> list[ActivatedSocket]:
    """The sockets systemd passed us, or [] when we were not socket-activated.

    Raises StartupError when the variables are ours but malformed.
    """
    env = os.environ if environ is None else environ
    count_text, pid_text = env.get("LISTEN_FDS"), env.get("LISTEN_PID")
    if not count_text or not pid_text:
        return []
    names_text = env.get("LISTEN_FDNAMES", "")
    try:
        pid, count = int(pid_text), int(count_text)
    except ValueError:
        raise StartupError(f"LISTEN_FDS={count_text!r} / LISTEN_PID={pid_text!r} are not numbers") from None
    if pid != os.getpid():
        return []  # meant for another process (we inherited the environment)
    if unset:
        for name in _LISTEN_VARS:
            env.pop(name, None)
    if count < 1:
        return []
    if count > 4096:
        raise StartupError(f"LISTEN_FDS={count}: more sockets than h2gate accepts (4096)")
    names = names_text.split(":") if names_text else []
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + count)
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            raise StartupError(f"LISTEN_FDS={count} but file descriptor {fd} is not open") from None
    for fd in fds:
        os.set_inheritable(fd, False)  # our children get them explicitly, or not at all
    return [ActivatedSocket(fd, names[i] if i < len(names) else "unknown") for i, fd in enumerate(fds)]


def notify(*lines: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; True if sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or not lines:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET=%r is not a unix socket path: not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto("\n".join(lines).encode(), address)
    except OSError as exc:
        log.debug("sd_notify %s to %s failed: %s", lines, address, exc)
        return False
    return True


def ready(pid: int | None = None) -> bool:
    return notify("READY=1", f"MAINPID={pid or os.getpid()}", "STATUS=serving")


def reloading() -> bool:
    # MONOTONIC_USEC lets Type=notify-reload match this to the SIGHUP it sent.
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading")


def stopping() -> None:
    notify("STOPPING=1", "STATUS=stopping")


def child_environment(environ: MutableMapping[str, str]) -> dict[str, str]:
    """The environment for our worker processes: no systemd variables meant for the main process."""
    return {k: v for k, v in environ.items() if k not in (*_LISTEN_VARS, "NOTIFY_SOCKET")}
