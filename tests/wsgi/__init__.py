"""Tests of h2gate.wsgi: environ, wsgi.input, start_response/write, the worker pool, trailers, frameworks."""
