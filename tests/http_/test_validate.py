"""h2gate.http.validate: the request and trailer rules of RFC 9113 §8.2-8.3 (end to end in tests/conformance)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2gate.http.validate import has_bad_value_byte, request_problem, trailer_problem

M, S, A, P = (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/")
CONNECT = (b":method", b"CONNECT")


@pytest.mark.parametrize(
    "headers",
    [
        [M, S, A, P],
        [M, S, P, (b"host", b"example.com")],
        [M, S, A, P, (b"host", b"example.com"), (b"te", b"Trailers"), (b"x-a", b"")],
        [CONNECT, A],
        [CONNECT, (b":protocol", b"websocket"), S, A, P],
        [M, S, P],  # no authority to convey (RFC 9113 §8.3.1): HAProxy's HTTP/2 health check
    ],
    ids=["plain", "host-only", "host-te-empty-value", "connect", "extended-connect", "no-authority"],
)
def test_well_formed(headers: list[tuple[bytes, bytes]]) -> None:
    assert request_problem(headers) is None


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ([S, A, P], "missing :method"),
        ([M, A, P], "missing :scheme"),
        ([M, S, A], "missing :path"),
        ([M, S, A, (b":path", b"")], "empty :path"),
        ([M, S, A, P, P], "duplicate"),
        ([M, S, A, P, (b":status", b"200")], "not allowed"),
        ([M, S, A, (b"x", b"1"), P], "after a regular field"),
        ([M, S, A, P, (b"X-Up", b"1")], "invalid field name"),
        ([M, S, A, P, (b"a b", b"1")], "invalid field name"),
        ([M, S, A, P, (b"", b"1")], "empty field name"),
        ([M, S, A, P, (b"x", b"a\nb")], "invalid character"),
        ([M, S, A, P, (b"x", b"a\rb")], "invalid character"),
        ([M, S, A, P, (b"x", b"\0")], "invalid character"),
        ([M, M, S, A, P], "duplicate"),
        ([M, S, S, A, P], "duplicate"),
        ([M, S, A, A, P], "duplicate"),
        ([CONNECT, (b":protocol", b"websocket"), (b":protocol", b"websocket"), S, A, P], "duplicate"),
        ([M, S, A, P, (b"x", b"a\t")], "whitespace"),
        ([M, S, A, P, (b"connection", b"close")], "connection-specific"),
        ([M, S, A, P, (b"te", b"gzip")], "te:"),
        ([M, S, A, P, (b"host", b"other.example")], "differ"),
        ([M, S, A, P, (b"host", b"example.com"), (b"host", b"example.com")], "more than one host"),
        ([CONNECT, A, P], "CONNECT with"),
        ([M, S, A, P, (b":protocol", b"websocket")], ":protocol outside"),
    ],
)
def test_malformed(headers: list[tuple[bytes, bytes]], fragment: str) -> None:
    problem = request_problem(headers)
    assert problem is not None and fragment in problem


def test_content_length_on_a_request_without_body() -> None:
    post = [(b":method", b"POST"), S, A, P]
    assert request_problem([*post, (b"content-length", b"0")], ended=True) is None
    assert request_problem([*post, (b"content-length", b"3")], ended=False) is None
    assert "without a body" in (request_problem([*post, (b"content-length", b"3")], ended=True) or "")


def test_trailers() -> None:
    assert trailer_problem([(b"x-checksum", b"abc")]) is None
    assert "pseudo-header" in (trailer_problem([(b":status", b"200")]) or "")
    assert "connection-specific" in (trailer_problem([(b"transfer-encoding", b"chunked")]) or "")


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1, 2", b"", b"3a", b"\xd9\xa3"])
def test_invalid_content_length(value: bytes) -> None:
    post = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    assert "invalid content-length" in (request_problem([*post, (b"content-length", value)]) or "")


def test_repeated_content_length() -> None:
    post = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    assert request_problem([*post, (b"content-length", b"3"), (b"content-length", b"03")]) is None
    assert "conflicting" in (request_problem([*post, (b"content-length", b"3"), (b"content-length", b"4")]) or "")


@pytest.mark.parametrize("bad", [b"\n", b"\r", b"\0"])
def test_a_bad_byte_in_a_known_fields_value(bad: bytes) -> None:
    """A name seen before skips the per-field check; its value is still searched, with all the others."""
    assert request_problem([M, S, A, P, (b"user-agent", b"curl")]) is None  # remembered as a good name
    problem = request_problem([M, S, A, P, (b"accept", b"*/*"), (b"user-agent", b"cu" + bad + b"rl")])
    assert problem is not None and "invalid character in the value of b'user-agent'" in problem


@given(st.binary(max_size=64))
def test_bad_value_byte_is_nul_cr_or_lf(value: bytes) -> None:
    assert has_bad_value_byte(value) == (re.search(rb"[\0\r\n]", value) is not None)
