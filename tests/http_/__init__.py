"""Tests of h2gate.http: request validation and forwarded headers.

Named ``http_`` (the usual trailing underscore for a name that is taken): servers the suite starts run with
tests/ on sys.path (cwd), where a folder named ``http`` would shadow the standard library's ``http``.
"""
