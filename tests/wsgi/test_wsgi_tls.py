"""WSGI over TLS: HTTPS and the mod_ssl-style SSL_* keys in the environ, with and without a client certificate."""

from __future__ import annotations

import ssl
import uuid

import httpx
import pytest

from tests.tlshelp import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("wsgi-pki"))


def test_wsgi_environ_carries_tls_details(serve, pki: PKI) -> None:
    server = serve(
        "apps.wsgi_apps:app",
        "--interface",
        "wsgi",
        "--certfile",
        pki.server.cert,
        "--keyfile",
        pki.server.key,
        "--ca-certs",
        pki.ca_pem,
        "--verify-client",
        "optional",
    )
    url = f"https://localhost:{server.port}/environ?key={uuid.uuid4().hex}"
    ctx = ssl.create_default_context(cafile=pki.ca_pem)
    ctx.load_cert_chain(pki.client.cert, pki.client.key)
    with httpx.Client(http2=True, verify=ctx, timeout=20) as client:
        response = client.get(url)
    assert response.http_version == "HTTP/2"
    environ = response.json()
    assert environ["HTTPS"] == "on"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SSL_PROTOCOL"] in ("TLSv1.2", "TLSv1.3")
    assert environ["SSL_CIPHER"]
    assert environ["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert "CN=alice" in environ["SSL_CLIENT_S_DN"]
    assert environ["SSL_CLIENT_CERT"].startswith("-----BEGIN CERTIFICATE")
    assert environ["SSL_TLS_SNI"] == "localhost"

    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=pki.ca_pem), timeout=20) as client:
        anonymous = client.get(url).json()
    assert anonymous["HTTPS"] == "on"
    assert anonymous["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_CERT" not in anonymous
