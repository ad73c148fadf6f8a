"""WSGI (PEP 3333) over HTTP/2: each request's app call runs in a worker thread.

Modules: :mod:`.environ` builds the environ, :mod:`.input` is ``wsgi.input``,
:mod:`.response` is ``start_response``/``write()`` and the body loop,
:mod:`.filewrapper` is ``wsgi.file_wrapper`` and :mod:`.handler` ties them to
an exchange. App threads reach trio (and so h2) only through
``trio.from_thread.run`` (:func:`.bridge.to_trio`).
"""

from h2gate.wsgi.handler import WSGIHandler

__all__ = ["WSGIHandler"]
