"""Tests of the command line: ``h2gate`` (h2gate.cli) and ``python -m h2gate.healthcheck``."""
