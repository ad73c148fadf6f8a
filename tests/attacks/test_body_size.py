"""``--max-body-size``: 413 before the app runs when content-length is over it; RST_STREAM CANCEL mid-stream.

CANCEL rather than REFUSED_STREAM for a body that outgrows the limit: the app
has already started on the request, and REFUSED_STREAM tells the client that
nothing was processed (RFC 9113 §8.7), so a retry would be safe. Both the
ASGI and the WSGI path go through the same check in the connection.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.attacks.conftest import Target
from tests.conformance.frames import CANCEL, Peer, data_frame, headers_frame, request_headers

LIMIT = 1000
APPS = {"asgi": ("apps.flow:app", "/wait-body?key=big"), "wsgi": ("apps.wsgi_apps:raw", "/upload?key=big")}


def _post(peer: Peer, path: str, length: int | None) -> int:
    sid = peer.new_stream_id()
    extra = [] if length is None else [("content-length", str(length))]
    block = peer.block(request_headers(path, method="POST", extra=extra))
    peer.send(headers_frame(sid, block, end_stream=False))
    return sid


@pytest.mark.parametrize("interface", sorted(APPS))
def test_declared_length_over_the_limit_gets_413(target: Callable[..., Target], interface: str) -> None:
    app, path = APPS[interface]
    t = target("--max-body-size", str(LIMIT), "--access-log", app=app)
    peer = t.peer()
    sid = _post(peer, path, LIMIT + 1)
    t.bystander_served()
    headers, body = peer.expect_response(sid)
    assert (headers[b":status"], body) == (b"413", b"Request body too large\n")
    # The upload is stopped (RFC 9113 §8.1: a complete response before the request ended).
    rst = peer.expect_rst(sid, 0)
    assert rst.stream_id == sid
    t.log(rf"request body of {LIMIT + 1} bytes from 127\.0\.0\.1:\d+ on stream {sid} is over --max-body-size")
    t.log(r'"POST /(wait-body|upload)\?key=big HTTP/2" 413|POST /(wait-body|upload).* 413')
    assert not any("big received" in line for line in t.server.lines)  # the app never ran
    peer.expect_alive()


@pytest.mark.parametrize("interface", sorted(APPS))
def test_413_holds_when_the_body_arrives_with_the_headers(target: Callable[..., Target], interface: str) -> None:
    # HEADERS and an over-limit DATA in one write are read in one batch: the
    # DATA must not turn the 413 into a mid-stream reset.
    app, path = APPS[interface]
    t = target("--max-body-size", str(LIMIT), app=app)
    peer = t.peer()
    for _ in range(5):
        sid = peer.new_stream_id()
        extra = [("content-length", str(LIMIT + 1))]
        block = peer.block(request_headers(path, method="POST", extra=extra))
        peer.send(headers_frame(sid, block, end_stream=False), data_frame(sid, b"x" * (LIMIT + 1), end_stream=True))
        headers, body = peer.expect_response(sid)
        assert (headers[b":status"], body) == (b"413", b"Request body too large\n")
    peer.expect_alive()


@pytest.mark.parametrize("interface", sorted(APPS))
def test_body_outgrowing_the_limit_is_reset(target: Callable[..., Target], interface: str) -> None:
    app, path = APPS[interface]
    t = target("--max-body-size", str(LIMIT), app=app)
    peer = t.peer()
    sid = _post(peer, path, None)  # no content-length: only the bytes tell
    peer.send(data_frame(sid, b"x" * 600))
    t.bystander_served()
    peer.send(data_frame(sid, b"x" * 600))
    peer.expect_rst(sid, CANCEL)
    t.log(rf"stream {sid} from 127\.0\.0\.1:\d+: request body grew past --max-body-size {LIMIT} \(RST_STREAM")
    peer.expect_alive()
    t.memory_bounded()


@pytest.mark.parametrize("interface", sorted(APPS))
def test_body_within_the_limit_is_served(target: Callable[..., Target], interface: str) -> None:
    app, path = APPS[interface]
    t = target("--max-body-size", str(LIMIT), app=app)
    peer = t.peer()
    sid = _post(peer, path, LIMIT)
    peer.send(data_frame(sid, b"x" * LIMIT, end_stream=True))
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"
