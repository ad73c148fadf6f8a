"""Tests of h2gate.testing, the pytest plugin users serve their apps with."""
