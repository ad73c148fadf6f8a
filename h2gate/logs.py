"""Logging setup, the access log line and the cached ``date`` header."""

from __future__ import annotations

import logging
import sys
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from h2gate.exchange import Exchange
    from h2gate.transport import Transport

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
access_logger = logging.getLogger("h2gate.access")
error_logger = logging.getLogger("h2gate.error")


def setup_logging(level: str, access_log: bool) -> None:
    """Our loggers write to stderr; the root logger is left to the app."""
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    for logger in (logging.getLogger("h2gate"),):
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False
    access_logger.disabled = not access_log
    access_logger.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def access_log(transport: Transport, scope: dict[str, Any] | Any, exchange: Exchange, duration: float) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    peer = transport.peer
    client = f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "-"
    if scope:
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        method = scope["method"]
    else:
        method, target = "-", "-"
    status = exchange.status or "-"
    if exchange.reset_code and not exchange.response_ended:
        status = f"{status} reset"
    access_logger.info(
        '%s - "%s %s HTTP/2" %s %d %.3fs stream=%d',
        client,
        method,
        target,
        status,
        exchange.bytes_sent,
        duration,
        exchange.stream_id,
    )


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current IMF-fixdate, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]
