"""Tests of h2gate.observe: the access log, log formats and the Prometheus metrics."""
