"""Tests of h2gate.tls: the context, the certificate store, the pyOpenSSL stream, reloads, resumption, stapling."""
