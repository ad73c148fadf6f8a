"""prepare_headers: which response fields the adapters refuse, and what they add (unit level)."""

from __future__ import annotations

import logging

import pytest

from h2gate.protocol.replies import HeaderError, prepare_headers


@pytest.mark.parametrize(
    "name",
    [b"", b"bad name", b":status", b"tab\tname", b"colon:in", b"caf\xc3\xa9", b"new\nline", b'quote"'],
)
def test_invalid_names_are_refused(name: bytes) -> None:
    with pytest.raises(HeaderError, match="not a valid field name"):
        prepare_headers([(name, b"v")], True)


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\0b", b"\r\n", b"end\n"])
def test_values_with_cr_lf_nul_are_refused(value: bytes) -> None:
    with pytest.raises(HeaderError, match="CR, LF or NUL"):
        prepare_headers([(b"x-v", value)], True)


def test_a_valid_block() -> None:
    pairs = [
        (b"Content-Type", b" text/plain "),
        (b"x-token!#$%&'*+-.^_`|~09az", b"\x80 \t v"),
        (b"content-length", b"5"),
    ]
    block, length = prepare_headers(pairs, True)
    assert block[0] == (b":status", b"")
    assert block[1:4] == [(b"content-type", b"text/plain"), (b"x-token!#$%&'*+-.^_`|~09az", b"\x80 \t v"), pairs[2]]
    assert block[4] == (b"server", b"h2gate")
    assert block[5][0] == b"date" and block[5][1].endswith(b" GMT")
    assert length == 5


def test_trailers_get_no_status_server_or_date() -> None:
    block, length = prepare_headers([(b"grpc-status", b"0")], True, trailer=True)
    assert block == [(b"grpc-status", b"0")] and length is None


def test_http1_header_warns_once_per_name_then_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from h2gate.protocol import replies

    monkeypatch.setattr(replies, "_warned", set())
    with caplog.at_level(logging.DEBUG, logger="h2gate.error"):
        for _ in range(3):  # an event stream per response, each with Connection: keep-alive
            out, _length = prepare_headers([(b"connection", b"keep-alive"), (b"x-a", b"1")], server_header=False)
            assert [name for name, _ in out] == [b":status", b"x-a", b"date"]
        prepare_headers([(b"Transfer-Encoding", b"chunked")], server_header=False)
    records = [(r.levelname, r.getMessage()) for r in caplog.records if "dropping" in r.getMessage()]
    assert [level for level, _ in records] == ["WARNING", "DEBUG", "DEBUG", "WARNING"]
    assert records[0][1].startswith("dropping response header 'connection': it has no meaning in HTTP/2")
    assert records[3][1].startswith("dropping response header 'transfer-encoding'")
