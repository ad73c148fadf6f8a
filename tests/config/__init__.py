"""Tests of h2gate.config: the options table, its sources and validation, and the example files in conf/."""
