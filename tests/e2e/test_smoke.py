"""The two most basic paths: h2c prior knowledge and TLS with ALPN h2, with httpx."""

from __future__ import annotations

import json

from tests.conftest import h2c_client, tls_client


def test_h2c_prior_knowledge(serve) -> None:
    server = serve("apps.basic:app")
    with h2c_client() as client:
        r = client.get(server.url + "/scope?x=1")
    assert r.http_version == "HTTP/2"
    scope = json.loads(r.text)
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "http"
    assert scope["query_string"] == "x=1"
    assert scope["headers"][0][0] == "host"
    assert scope["state"] == {"greeting": "hi"}


def test_tls_alpn_h2(serve, certs) -> None:
    server = serve("apps.basic:app", tls=True)
    assert server.url.startswith("https://")
    url = server.url.replace("127.0.0.1", "localhost")
    with tls_client(certs) as client:
        r = client.post(url + "/echo", content=b"x" * 100_000)
        assert r.http_version == "HTTP/2"
        assert r.content == b"x" * 100_000
        assert json.loads(client.get(url + "/scope").text)["scheme"] == "https"
