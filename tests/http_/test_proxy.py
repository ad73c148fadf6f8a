"""--proxy-headers / --forwarded-allow-ips: parsing units, then end to end through the real server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from h2gate.errors import ConfigError
from h2gate.http.forwarded import (
    Hop,
    ProxyHeaders,
    TrustedPeers,
    choose_hop,
    forwarded_hops,
    node_address,
    parse_forwarded,
    parse_x_forwarded,
)
from h2gate.http.head import RequestHead
from h2gate.net.transport import CleartextTransport
from tests.conftest import h2c_client

# -- units ---------------------------------------------------------------------------------------


def test_parse_forwarded_elements_quotes_and_case() -> None:
    hops = parse_forwarded(['for=192.0.2.60;proto=https;by=203.0.113.43, For="[2001:db8::1]:4711";Host="a,b.example"'])
    assert hops == [Hop("192.0.2.60", "https", None), Hop("[2001:db8::1]:4711", None, "a,b.example")]


def test_parse_forwarded_skips_junk() -> None:
    assert parse_forwarded(["garbage, ;;, for=1.2.3.4"]) == [Hop("1.2.3.4", None, None)]
    assert parse_forwarded([""]) == []


def test_x_forwarded_aligns_proto_and_host_with_for() -> None:
    hops = parse_x_forwarded(["1.1.1.1, 2.2.2.2"], ["https, http"], ["a.example, b.example"])
    assert hops == [Hop("1.1.1.1", "https", "a.example"), Hop("2.2.2.2", "http", "b.example")]
    # counts that do not line up: the last value (set by the nearest proxy) applies to every hop
    assert parse_x_forwarded(["1.1.1.1, 2.2.2.2"], ["https"], []) == [
        Hop("1.1.1.1", "https", None),
        Hop("2.2.2.2", "https", None),
    ]
    assert parse_x_forwarded([], ["https"], []) == [Hop(None, "https", None)]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 0)),
        ("192.0.2.1:8080", ("192.0.2.1", 8080)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("192.0.2.1:99999", ("192.0.2.1", 0)),
        ("unknown", None),
        ("_hidden", None),
        ("example.com", None),
    ],
)
def test_node_address(node: str, expected: tuple[str, int] | None) -> None:
    assert node_address(node) == expected


def test_trusted_peers() -> None:
    trusted = TrustedPeers(["127.0.0.1, 10.0.0.0/8", "::1"])
    assert trusted.trusts("127.0.0.1") and trusted.trusts("10.20.30.40") and trusted.trusts("::1")
    assert trusted.trusts("::ffff:10.1.1.1")  # IPv4-mapped
    assert not trusted.trusts("11.0.0.1") and not trusted.trusts(None) and not trusted.trusts("nonsense")
    assert TrustedPeers(["*"]).trusts("8.8.8.8") and TrustedPeers(["unix"]).trusts(None)
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.300' is not an IP address"):
        TrustedPeers(["10.0.0.300"])


def test_choose_hop_skips_trusted_proxies_from_the_right() -> None:
    trusted = TrustedPeers(["10.0.0.0/8"])
    hops = [Hop("6.6.6.6"), Hop("1.2.3.4", "https"), Hop("10.0.0.2"), Hop("10.0.0.3")]
    assert choose_hop(hops, trusted) == Hop("1.2.3.4", "https")  # 6.6.6.6 could be forged by 1.2.3.4
    assert choose_hop([Hop("10.0.0.2")], trusted) == Hop("10.0.0.2")  # all trusted: the leftmost
    assert choose_hop([], trusted) is None


def _apply(fields: list[tuple[bytes, bytes]], peer: tuple[str, int] = ("127.0.0.1", 5000), allow: str = "127.0.0.1"):
    head = RequestHead(method=b"GET", scheme=b"http", authority=b"internal:8000", target=b"/", fields=fields)
    transport = CleartextTransport(None, peer, ("127.0.0.1", 8000))  # type: ignore[arg-type]
    return ProxyHeaders([allow]).apply(head, transport), head, transport


def test_apply_trusted_forwarded() -> None:
    out, head, _ = _apply([(b"forwarded", b'for="[2001:db8::7]:1234";proto=https;host=shop.example')])
    assert (out.peer, out.scheme, head.scheme, head.authority) == (
        ("2001:db8::7", 1234),
        "https",
        b"https",
        b"shop.example",
    )


def test_apply_prefers_forwarded_over_x_forwarded() -> None:
    fields = [(b"x-forwarded-for", b"5.5.5.5"), (b"forwarded", b"for=7.7.7.7")]
    assert forwarded_hops(fields) == [Hop("7.7.7.7")]
    out, _, _ = _apply(fields)
    assert out.peer == ("7.7.7.7", 0)


def test_apply_untrusted_peer_changes_nothing() -> None:
    fields = [(b"x-forwarded-for", b"5.5.5.5"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"evil")]
    out, head, transport = _apply(fields, allow="10.0.0.1")
    assert out is transport and head.scheme == b"http" and head.authority == b"internal:8000"


def test_apply_ignores_bad_scheme_and_host() -> None:
    fields = [(b"x-forwarded-proto", b"gopher"), (b"x-forwarded-host", b"bad host/with space")]
    out, head, transport = _apply(fields)
    assert out is transport and head.scheme == b"http" and head.authority == b"internal:8000"


# -- end to end ----------------------------------------------------------------------------------

FORWARDED = {
    "x-forwarded-for": "203.0.113.9, 127.0.0.1",
    "x-forwarded-proto": "https, https",
    "x-forwarded-host": "public.example",
}


def _scope(server: Any, headers: dict[str, str], path: str = "/scope") -> dict[str, Any]:
    """What the app saw: the ASGI scope (apps.basic), or the WSGI environ at /environ (apps.observe)."""
    with h2c_client() as client:
        r = client.get(f"{server.url}{path}", headers=headers)
    assert r.status_code == 200
    return json.loads(r.text)


def test_asgi_trusted_peer(serve: Any) -> None:
    server = serve("apps.basic:app", "--proxy-headers")
    scope = _scope(server, FORWARDED)
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["scheme"] == "https"
    assert dict(scope["headers"])["host"] == "public.example"
    assert scope["server"][0] == "127.0.0.1"  # the socket we listen on, unchanged
    server.wait_for_log(r'^.*203\.0\.113\.9:0 - "GET /scope HTTP/2" 200 ')


def test_asgi_forwarded_header(serve: Any) -> None:
    server = serve("apps.basic:app", "--proxy-headers")
    scope = _scope(server, {"forwarded": 'for="[2001:db8::5]:4711";proto=https'})
    assert (scope["client"], scope["scheme"]) == (["2001:db8::5", 4711], "https")


def test_asgi_untrusted_peer_is_ignored(serve: Any) -> None:
    server = serve("apps.basic:app", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1")
    scope = _scope(server, FORWARDED)
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"
    assert dict(scope["headers"])["host"].startswith("127.0.0.1:")


def test_asgi_without_proxy_headers_flag(serve: Any) -> None:
    server = serve("apps.basic:app")
    scope = _scope(server, FORWARDED)
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


def test_wsgi_trusted_and_untrusted(serve: Any) -> None:
    trusted = serve("apps.observe:wsgi_app", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.0/8")
    env = _scope(trusted, FORWARDED, "/environ")
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_HOST"]) == ("203.0.113.9", "https", "public.example")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("public.example", "443")
    untrusted = serve("apps.observe:wsgi_app", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1")
    env = _scope(untrusted, FORWARDED, "/environ")
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_bad_allow_ips_is_a_startup_error(serve: Any) -> None:
    server = serve("apps.basic:app", "--proxy-headers", "--forwarded-allow-ips", "not-an-ip", wait=False)
    assert server.proc.wait(20) == 2  # a usage error
    server.wait_for_log(r"h2gate: error: --forwarded-allow-ips: 'not-an-ip' is not an IP address")
