"""h2gate: an HTTP/2-only application server for Python web apps (ASGI and WSGI)."""

__version__ = "0.1.0"
