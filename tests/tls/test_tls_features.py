"""TLS features with real clients: SNI certificates, mTLS, and the ASGI ``tls`` extension."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from h2gate.errors import ConfigError
from h2gate.tls.certstore import Contexts, parse_cert_spec
from h2gate.tls.context import TLSInfo, wsgi_tls_environ
from tests.tlshelp import PKI, curl, dns_names, make_pki, served_cert

APP = "apps.tlsinfo:app"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_flags(pki: PKI, *extra: str) -> list[str]:
    return ["--certfile", pki.server.cert, "--keyfile", pki.server.key, *extra]


def resolve(port: int, *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        out += ["--resolve", f"{name}:{port}:127.0.0.1"]
    return out


# -- SNI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sni_server(pki: PKI, request: pytest.FixtureRequest):
    from tests.conftest import ServerProcess

    flags = tls_flags(
        pki, "--cert", f"other.example.test={pki.other.spec}", "--cert", f"*.wild.example.test={pki.wild.spec}"
    )
    proc = ServerProcess([APP, "-b", "127.0.0.1:0", *flags]).wait_ready()
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("other.example.test", "other.example.test"),
        ("OTHER.example.test", "other.example.test"),
        ("a.wild.example.test", "*.wild.example.test"),
        ("b.a.wild.example.test", "localhost"),  # a wildcard covers one label only
        ("wild.example.test", "localhost"),
        ("unknown.example.test", "localhost"),
        (None, "localhost"),
    ],
)
def test_sni_picks_certificate(sni_server, name, expected) -> None:
    assert dns_names(served_cert(sni_server.port, name))[0] == expected


def test_sni_with_curl_verifies_each_host(sni_server, pki) -> None:
    port = sni_server.port
    for host in ("localhost", "other.example.test", "x.wild.example.test"):
        proc = curl("--http2", "--cacert", pki.ca_pem, *resolve(port, host), f"https://{host}:{port}/")
        ext = json.loads(proc.stdout)["extensions"]["tls"]
        served = x509.load_pem_x509_certificate(ext["server_cert"].encode())
        assert host in dns_names(served) or dns_names(served)[0] == "*.wild.example.test"


def test_cert_spec_parsing() -> None:
    assert parse_cert_spec("A.example.com.=c.pem:k.pem").host == "a.example.com"
    site = parse_cert_spec("*.example.com=/etc/both.pem")
    assert (site.host, site.certfile, site.keyfile) == ("*.example.com", "/etc/both.pem", None)
    for bad in ("nohost", "=c.pem", "a.*.com=c.pem", "*.com=c.pem", "*x.example.com=c.pem"):
        with pytest.raises(ConfigError):
            parse_cert_spec(bad)


def test_lookup_prefers_exact_names() -> None:
    default, exact, wild = object(), object(), object()
    contexts = Contexts(default, {"a.example.com": exact}, {"example.com": wild})  # type: ignore[arg-type]
    assert contexts.lookup("a.example.com") is exact
    assert contexts.lookup("b.example.com") is wild
    assert contexts.lookup("example.com") is None
    assert contexts.lookup("c.b.example.com") is None


# -- mTLS -----------------------------------------------------------------------------------------


def test_mtls_required(serve, pki) -> None:
    server = serve(APP, *tls_flags(pki, "--ca-certs", pki.ca_pem, "--verify-client", "required"))
    port = server.port
    base = ["--http2", "--cacert", pki.ca_pem, *resolve(port, "localhost"), f"https://localhost:{port}/"]
    # With the client certificate: curl and httpx.
    proc = curl("--cert", pki.client.cert, "--key", pki.client.key, *base)
    tls = json.loads(proc.stdout)["extensions"]["tls"]
    assert tls["client_cert_name"].startswith("CN=alice")
    assert len(tls["client_cert_chain"]) >= 1 and tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE")
    assert tls["client_cert_error"] is None
    ctx = ssl.create_default_context(cafile=pki.ca_pem)
    ctx.load_cert_chain(pki.client.cert, pki.client.key)
    with httpx.Client(http2=True, verify=ctx, timeout=20) as client:
        response = client.get(f"https://127.0.0.1:{port}/")
    assert response.http_version == "HTTP/2"
    assert "CN=alice" in response.json()["extensions"]["tls"]["client_cert_name"]
    # Without one: the handshake fails, and the log says why.
    assert curl(*base, check=False).returncode != 0
    server.wait_for_log("client certificate rejected: no client certificate sent")
    # With one from a CA we do not trust.
    assert curl("--cert", pki.stranger.cert, "--key", pki.stranger.key, *base, check=False).returncode != 0
    server.wait_for_log(r"client certificate rejected: .*(issuer|self.signed).*mallory")


def test_mtls_optional(serve, pki) -> None:
    server = serve(APP, *tls_flags(pki, "--ca-certs", pki.ca_pem, "--verify-client", "optional"))
    port = server.port
    base = ["--http2", "--cacert", pki.ca_pem, *resolve(port, "localhost"), f"https://localhost:{port}/"]
    tls = json.loads(curl(*base).stdout)["extensions"]["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    tls = json.loads(curl("--cert", pki.client.cert, "--key", pki.client.key, *base).stdout)["extensions"]["tls"]
    assert "CN=alice" in tls["client_cert_name"]
    # A certificate that does not verify is still refused.
    assert curl("--cert", pki.stranger.cert, "--key", pki.stranger.key, *base, check=False).returncode != 0
    server.wait_for_log("client certificate rejected")


# -- the ASGI tls extension --------------------------------------------------------------------


def test_tls_extension_fields(serve, pki) -> None:
    server = serve(APP, *tls_flags(pki))
    port = server.port
    base = ["--cacert", pki.ca_pem, *resolve(port, "localhost"), f"https://localhost:{port}/"]
    tls = json.loads(curl("--http2", "--tlsv1.3", *base).stdout)["extensions"]["tls"]
    assert tls["server_cert"] == Path(pki.server.cert).read_text()
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None and tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    tls = json.loads(curl("--http2", "--tls-max", "1.2", *base).stdout)["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] in (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA8, 0xCCA9)


def test_no_tls_extension_on_cleartext(serve) -> None:
    server = serve(APP)
    proc = curl("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/")
    extensions = json.loads(proc.stdout)["extensions"]
    assert "tls" not in extensions
    assert "http.response.trailers" in extensions  # the HTTP/2 extensions are there; only tls is missing


def test_wsgi_tls_environ() -> None:
    info = TLSInfo(
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alpn="h2",
        server_name="example.test",
        peer_cert_pem=b"LEAF",
        server_cert_pem=b"SERVER",
        peer_chain_pem=(b"LEAF", b"INTERMEDIATE"),
        peer_subject="CN=alice",
    )
    environ = wsgi_tls_environ(info)
    assert environ == {
        "HTTPS": "on",
        "SSL_PROTOCOL": "TLSv1.3",
        "SSL_CIPHER": "TLS_AES_128_GCM_SHA256",
        "SSL_CLIENT_VERIFY": "SUCCESS",
        "SSL_TLS_SNI": "example.test",
        "SSL_SERVER_CERT": "SERVER",
        "SSL_CLIENT_CERT": "LEAF",
        "SSL_CLIENT_CERT_CHAIN_0": "INTERMEDIATE",
        "SSL_CLIENT_S_DN": "CN=alice",
    }
    bare = wsgi_tls_environ(TLSInfo("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "h2", None, None))
    assert bare["SSL_CLIENT_VERIFY"] == "NONE" and "SSL_CLIENT_CERT" not in bare


def test_handshakes_without_a_client_certificate_share_one_info() -> None:
    """An idle connection keeps a reference, not its own TLSInfo; one with a client certificate keeps its own."""
    from h2gate.tls.info import _interned

    def made(server_name: str, chain: tuple[bytes, ...] = ()) -> TLSInfo:
        return TLSInfo(
            "TLSv1.3", "TLS_AES_128_GCM_SHA256", "h2", server_name, chain[0] if chain else None,
            0x0304, 0x1301, b"SERVER", chain, "CN=alice" if chain else None,
        )  # fmt: skip

    first = _interned(made("a.test"))
    assert _interned(made("a.test")) is first
    other = _interned(made("b.test"))
    assert other is not first and other.server_name == "b.test"
    with_cert = made("a.test", (b"LEAF",))
    assert _interned(with_cert) is with_cert
    assert _interned(made("a.test", (b"LEAF",))) is not with_cert


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cert": ["a.test=c.pem:k.pem"]}, "--cert needs --certfile"),
        ({"ocsp_response": "o.der"}, "--ocsp-response needs --certfile"),
        ({"certfile": "c.pem", "verify_client": "required"}, "--verify-client required needs --ca-certs"),
        ({"verify_client": "optional", "ca_certs": "ca.pem"}, "needs TLS"),
    ],
)
def test_tls_option_cross_checks(values, message) -> None:
    from h2gate.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(values, {})


def test_bad_ca_file_is_one_line(serve, pki, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("nope\n")
    server = serve(APP, *tls_flags(pki, "--ca-certs", str(bogus), "--verify-client", "required"), wait=False)
    assert server.proc.wait(20) == 1
    server.stop()
    assert server.lines == [f"h2gate: error: CA certificates file {bogus} does not contain a PEM certificate"]
