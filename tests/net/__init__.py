"""Tests of h2gate.net: negotiation (prior knowledge, h2c upgrade, 505), the preface, PROXY protocol, socket sending."""
