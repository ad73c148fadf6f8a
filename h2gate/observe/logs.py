"""Logging setup (text or JSON, stream or file, or the user's dictConfig), the access log call, the ``date`` cache.

Our loggers are ``h2gate.error`` and ``h2gate.access`` below ``h2gate``; the
root logger is left to the app. With our own setup every line goes through a
:class:`h2gate.observe.logsink.LineSink` per destination: formatted once on
the event loop, written in batches by a thread (order kept, flushed at exit,
files reopened when logrotate moves them or on :func:`reopen`). An access
line skips the ``logging`` machinery altogether (no LogRecord, no handler
lock, no second formatting pass): :func:`access_log` builds the finished line
and puts it in the sink, which costs about a tenth of a LogRecord's trip.
With ``--log-config`` the user's handlers get ordinary records instead.
SIGUSR1 (Gunicorn's meaning, logrotate's usual ``postrotate`` step) reopens
every log file at once with :func:`reopen_log_files`: our sinks' and any
``logging.FileHandler`` of --log-config or the app.
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import sys
import time
import tomllib
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final

from h2gate.compiled import caused, mypyc_attr
from h2gate.errors import ConfigError
from h2gate.observe import metrics
from h2gate.observe.accesslog import AccessFormat, Entry, default_line
from h2gate.observe.logsink import LineSink, SinkHandler, flush_all, reopen_all, sink_for

if TYPE_CHECKING:
    from h2gate.config import Config
    from h2gate.net.transport import Transport
    from h2gate.protocol.stream import Stream

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
access_logger: Final = logging.getLogger("h2gate.access")
error_logger: Final = logging.getLogger("h2gate.error")
_INFO: Final = logging.INFO
TEXT_FORMAT = "%(asctime)s [%(levelname)s] %(message)s"
TEXT_DATEFMT = "%Y-%m-%d %H:%M:%S"


class _AccessState:
    """What :func:`access_log` needs per line, set by :func:`setup_logging`: one object, not module globals.

    Compiled, a module global that is ever reassigned is a lookup in the module's
    dict (about 140 instructions each, five per line); a ``Final`` instance of a
    native class is a C static whose attributes are struct fields.
    """

    def __init__(self) -> None:
        self.format = AccessFormat()
        self.json = False
        #: Text lines in the default format: :func:`access_log` calls :func:`default_line` itself.
        self.default_text = True
        #: Where access lines go straight to, bypassing logging: set by our own setup, None with --log-config.
        self.sink: LineSink | None = None
        #: The current second's ``asctime [INFO] `` prefix and the span of time it is right for.
        self.second_start = 0.0
        self.second_end = 0.0
        self.prefix = ""


_state: Final = _AccessState()


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, plus an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _handler(target: str, stream: Any, option: str) -> SinkHandler:
    try:
        return SinkHandler(sink_for(target, stream))
    except OSError as exc:
        raise caused(ConfigError(f"{option} {target}: cannot open: {exc.strerror or exc}"), None)


def load_log_config(path: str) -> None:
    """Apply a ``logging.dictConfig`` file, JSON or TOML by its extension. Raises ConfigError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise caused(ConfigError(f"--log-config {path}: cannot read: {exc.strerror or exc}"), None)
    try:
        if path.endswith(".toml"):
            data = tomllib.loads(raw.decode("utf-8"))
        elif path.endswith(".json"):
            data = json.loads(raw)
        else:
            raise ConfigError(f"--log-config {path}: name a .json or .toml file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise caused(ConfigError(f"--log-config {path}: not valid {path.rsplit('.', 1)[-1].upper()}: {exc}"), None)
    if not isinstance(data, dict):
        raise ConfigError(f"--log-config {path}: expected a dictConfig mapping")
    data.setdefault("version", 1)
    # Our loggers exist already (module level); dictConfig would silence them by default.
    data.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(data)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise caused(ConfigError(f"--log-config {path}: {exc}"), None)


def setup_logging(level: str, access_log: bool, config: Config | None = None) -> None:
    """Configure our loggers; ``config`` adds the format, files and --log-config. Raises ConfigError."""
    state = _state
    if config is not None:
        state.format = AccessFormat(config.access_log_format)
        state.json = config.log_format == "json"
    state.default_text = state.format.direct is not None and not state.json
    state.sink = None
    if config is not None and config.log_config:
        load_log_config(config.log_config)
        if not access_log:
            access_logger.disabled = True
        return
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    if state.json:
        formatter: logging.Formatter = JSONFormatter()
    else:
        formatter = logging.Formatter(TEXT_FORMAT, TEXT_DATEFMT)
    handler = _handler(config.error_logfile if config else "-", sys.stderr, "--error-logfile")
    handler.setFormatter(formatter)
    root = logging.getLogger("h2gate")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False
    access_logger.handlers.clear()
    access_logger.propagate = True
    access_handler = handler
    if config is not None and config.access_logfile is not None:
        access_handler = _handler(config.access_logfile, sys.stdout, "--access-logfile")
        access_handler.setFormatter(formatter)
        access_logger.handlers[:] = [access_handler]
        access_logger.propagate = False
    access_logger.disabled = not access_log
    access_logger.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    state.sink = access_handler.sink


def reopen() -> None:
    """Reopen every log file after the lines already queued; never blocks. See :func:`reopen_log_files`."""
    reopen_log_files()


def flush() -> None:
    """Write every queued log line now (before a forced exit; normal exits do it through atexit)."""
    flush_all()


def _text_prefix(now: float) -> str:
    """``TEXT_FORMAT``'s "asctime [INFO] " for an access line, formatted at most once a second."""
    state = _state
    if state.second_start <= now < state.second_end:
        return state.prefix
    whole = int(now)
    text = f"{time.strftime(TEXT_DATEFMT, time.localtime(whole))} [INFO] "
    state.second_start, state.second_end, state.prefix = float(whole), float(whole + 1), text
    return text


def _json_line(entry: Entry, message: str, now: float) -> str:
    """The line :class:`JSONFormatter` makes for an access record, without the record."""
    out: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "level": "INFO",
        "logger": access_logger.name,
        "message": message,
    }
    out.update(entry.fields())
    return json.dumps(out, default=str)


def reopen_log_files() -> int:
    """Reopen every log file of the process: our sinks' (after the lines already queued) and every other
    ``logging.FileHandler`` (--log-config's, the app's). Returns how many.

    Never blocks on our files (their writer threads reopen them); a handler
    that cannot be reopened keeps its old file and is reported on the error log.
    """
    count = reopen_all()
    known = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(v for v in known if isinstance(v, logging.Logger))]
    seen: set[int] = set()
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler) or id(handler) in seen:
                continue
            seen.add(id(handler))
            handler.acquire()
            try:
                fresh = open(handler.baseFilename, handler.mode, encoding=handler.encoding, errors=handler.errors)
            except OSError as exc:
                error_logger.error("cannot reopen log file %s: %s", handler.baseFilename, exc.strerror or exc)
                fresh = None  # (not ``continue`` here: mypyc, which compiles this module, has no continue in a finally)
            finally:
                handler.release()
            if fresh is None:
                continue
            old = handler.setStream(fresh)  # type: ignore[arg-type]
            if old is not None:
                old.close()
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                handler.reopenIfNeeded()  # remember the new file's inode, so it is not reopened once more
            count += 1
    return count


def access_log(transport: Transport, scope: dict[str, Any] | Any, exchange: Stream, duration: float) -> None:
    """Count the finished exchange in the metrics and write its access line.

    The common case (our own setup, text lines, the default format) is one
    f-string with the time prefix folded in and one append to the sink's queue.
    """
    metrics.recorder.request_done(exchange.status, duration)
    if not access_logger.isEnabledFor(_INFO):
        return
    state = _state
    sink = state.sink
    if sink is not None:
        now = time.time()
        prefix = state.prefix if state.second_start <= now < state.second_end else _text_prefix(now)
        if state.default_text:  # the default line, no Entry: the common case
            sink.put(default_line(transport, scope, exchange, duration, prefix))
            return
        entry = Entry(transport, scope, exchange, duration)
        line = state.format.line(entry)
        sink.put(_json_line(entry, line, now) if state.json else prefix + line)
        return
    entry = Entry(transport, scope, exchange, duration)
    if state.json:
        access_logger.info(state.format.line(entry), extra={"access": entry.fields()})
    else:
        access_logger.info(state.format.line(entry))


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current IMF-fixdate, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]
