"""Running a WSGI app for one exchange, in a thread of the :class:`~h2gate.wsgi.pool.WorkerPool`.

The stream's trio task waits for its job while the app runs in a worker
thread, and runs the thread's reads and writes for it. When all ``--threads``
are busy, new streams wait for one, first come first served; streams beyond
SETTINGS_MAX_CONCURRENT_STREAMS are refused by h2 itself. A client reset makes the thread's next read or write raise
:class:`~h2gate.errors.ClientDisconnected` (an OSError); a lost connection or
a shutdown past its grace period cancels the stream task, which the thread
sees the same way on its next I/O. A thread cannot be interrupted, so a
cancelled stream stops waiting for it (with a warning): one app stuck in a
blocking call must not keep the server from shutting down. The thread keeps
its slot in the pool until it really ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import trio

from h2gate.config import Config
from h2gate.errors import AppMistake, ClientDisconnected, ErrorCode
from h2gate.net.transport import Transport
from h2gate.observe.logs import access_log
from h2gate.protocol.replies import fail, simple_response
from h2gate.protocol.stream import Stream
from h2gate.wsgi.environ import build_environ
from h2gate.wsgi.filewrapper import FileWrapper
from h2gate.wsgi.input import InputStream, is_rpc_stream
from h2gate.wsgi.pool import WorkerPool
from h2gate.wsgi.response import TrailerMistake, WSGICall

log = logging.getLogger("h2gate.error")


class WSGIHandler:
    """Serves exchanges with one WSGI app; ``threads`` app calls run at once."""

    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.pool = WorkerPool(config.threads)
        self.root_path = config.root_path
        self.server_header = config.server_header

    async def handle(self, exchange: Stream, transport: Transport) -> None:
        started = time.perf_counter()
        environ = build_environ(exchange, transport, self.root_path)
        if environ is None:
            await simple_response(exchange, 501, b"CONNECT is not supported by this server\n", self.server_header)
            access_log(transport, None, exchange, time.perf_counter() - started)
            return
        environ["wsgi.input"] = InputStream(
            exchange,
            at_end=exchange.request_ended and not exchange.buffered,
            partial=is_rpc_stream(environ),
        )
        environ["wsgi.file_wrapper"] = FileWrapper
        method = environ["REQUEST_METHOD"]
        raw_path, _, query = environ["RAW_URI"].partition("?")
        where = f"{method} {raw_path}"
        call = WSGICall(exchange, method == "HEAD", self.server_header)
        environ["wsgi.ext.http.send_trailers"] = call.send_trailers
        job = None
        try:
            try:
                job = self.pool.submit(call.run, self.app, environ)
                await job.wait()
            except Exception:
                job = None  # the app's thread is done (or never started)
                if call.mistake is not None:
                    raise call.mistake from None  # a bad trailer, whatever the app made of it
                # A complete response still goes out when only close() failed afterwards.
                with contextlib.suppress(Exception):
                    await call.send_rest()
                raise
            job = None
            if call.mistake is not None:
                raise call.mistake
            await call.send_rest()
        except trio.Cancelled:
            if job is not None and job.started:  # not for a call still queued: it is dropped
                log.warning(
                    "%s: stream cancelled while the app's thread still runs; the thread is left to finish", where
                )
            raise
        except ClientDisconnected:
            log.debug("stream %d: client went away during %s", exchange.stream_id, where)
        except TrailerMistake as exc:
            log.error("%s: WSGI error in the app: %s (stream reset)", where, exc)
            exchange.reset(ErrorCode.INTERNAL_ERROR)
        except AppMistake as exc:
            log.error("%s: WSGI error in the app: %s", where, exc)
            await self._fail(exchange)
        except Exception:
            log.exception("%s: exception in the app", where)
            await self._fail(exchange)
        except (SystemExit, KeyboardInterrupt) as exc:  # from the app's thread: one request must not stop the server
            log.error("%s: the app raised %r; answered 500, the server keeps running", where, exc)
            await self._fail(exchange)
        finally:
            scope = {"method": method, "raw_path": raw_path.encode("latin-1"), "query_string": query.encode("latin-1")}
            access_log(transport, scope, exchange, time.perf_counter() - started)

    def close(self) -> None:
        """Once the server has stopped: let the idle worker threads go (busy ones end with their app call)."""
        self.pool.close()

    async def _fail(self, exchange: Stream) -> None:
        if not exchange.response_ended:  # a failing close() after a complete response changes nothing
            await fail(exchange, self.server_header)
