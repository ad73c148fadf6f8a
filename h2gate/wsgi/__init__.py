"""WSGI (PEP 3333) over HTTP/2: each request's app call runs in a worker thread.

Modules: :mod:`.environ` builds the environ, :mod:`.input` is ``wsgi.input``,
:mod:`.response` is ``start_response``/``write()`` and the body loop,
:mod:`.filewrapper` is ``wsgi.file_wrapper``, :mod:`.pool` runs the app calls
in worker threads and :mod:`.handler` ties them to an exchange. App threads
reach trio (and so h2) only through :func:`.bridge.to_trio`, which runs the
call in the stream's own trio task.
"""

from h2gate.wsgi.handler import WSGIHandler

__all__ = ["WSGIHandler"]
