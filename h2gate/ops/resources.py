"""The process's open-file limit: raised to its hard limit at startup, and the default --max-connections drawn from it.

Each connection holds one descriptor (two while a TLS handshake's socket and
an upgrade overlap are not a concern: one socket either way). The soft
``RLIMIT_NOFILE`` is often 1024 while the hard one allows far more; servers
raise it (nginx's ``worker_rlimit_nofile``, systemd's ``LimitNOFILE=``), and so
does h2gate, once, before it opens anything. Workers inherit the raised limit.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # pragma: no cover - not on this platform
    resource = None  # type: ignore[assignment]

log = logging.getLogger("h2gate.error")

#: A limit h2gate never raises the soft limit past, even when the hard one is unlimited.
CEILING = 1 << 20
#: Descriptors kept back from connections for log files, the app's own files and sockets, pipes.
RESERVE_MIN = 64


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at ``CEILING``); returns the soft limit now."""
    if resource is None:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft >= target):
        return CEILING if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.debug("open-file limit raised from %d to %d", soft, target)
    return target


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE now (0 where the platform has none)."""
    if resource is None:
        return 0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return CEILING if soft == resource.RLIM_INFINITY else soft


def default_max_connections(nofile: int) -> int:
    """--max-connections 0 (the default): the open-file limit less a tenth (at least ``RESERVE_MIN``) kept back."""
    if nofile <= 0:
        return 1000
    return max(1, nofile - max(RESERVE_MIN, nofile // 10))
