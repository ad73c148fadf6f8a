"""File bodies: ASGI ``http.response.zerocopysend`` and WSGI ``wsgi.file_wrapper`` over real files.

Both go through :mod:`h2gate.protocol.filebody` (as pathsend does, see tests/asgi/test_extensions.py):
chunks read off the trio thread, each sent once the client's window has room.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from tests.conftest import ServerProcess
from tests.h2raw import RawH2

APP = "apps.bodies:app"
WSGI = "apps.bodies:wsgi"
WINDOW = 65_535  # the client's default stream window


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, serve) -> ServerProcess:  # type: ignore[no-untyped-def]
    return serve(APP, "--loop", request.param)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bodies") / "data.bin"
    path.write_bytes(os.urandom(300_000))
    return path


# -- zerocopysend ----------------------------------------------------------------------------------


def test_zerocopysend_whole_file(server: ServerProcess, data_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/zerocopy?file={data_file}")
    assert stream.status == 200 and stream.ended and stream.reset is None
    assert stream.body == data_file.read_bytes()
    assert stream.header(b"content-length") == b"300000"


@pytest.mark.parametrize(("offset", "count"), [(1000, 5000), (0, 1), (299_999, 1), (123_456, 0), (70_000, 200_000)])
def test_zerocopysend_offset_and_count(server: ServerProcess, data_file: Path, offset: int, count: int) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/zerocopy?file={data_file}&offset={offset}&count={count}")
    assert stream.status == 200 and stream.ended
    assert stream.body == data_file.read_bytes()[offset : offset + count]
    assert stream.header(b"content-length") == str(count).encode()


def test_zerocopysend_in_two_messages(server: ServerProcess, data_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/zerocopy?file={data_file}&offset=10&count=200000&split=90000")
    assert stream.status == 200 and stream.ended
    assert stream.body == data_file.read_bytes()[10:200_010]
    assert stream.header(b"content-length") is None  # the first message said more_body: the size was unknown


def test_zerocopysend_from_the_file_position(server: ServerProcess, data_file: Path) -> None:
    # No offset: from where the file stands, and the position moves past what was sent (as sendfile's does).
    with RawH2(server.port) as client:
        stream = client.get(f"/zerocopy?file={data_file}&pos=250000")
    assert stream.body == data_file.read_bytes()[250_000:] + b"\nx-pos 300000"


def test_zerocopysend_head(server: ServerProcess, data_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/zerocopy?file={data_file}&offset=5&count=777", method="HEAD")
    assert stream.status == 200 and stream.body == b"" and stream.ended
    assert stream.header(b"content-length") == b"777"


def test_zerocopysend_curl(server: ServerProcess, data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    url = f"{server.url}/zerocopy?file={data_file}&offset=100&count=250000"
    subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", str(out), "--max-time", "30", url], check=True, timeout=40
    )
    assert out.read_bytes() == data_file.read_bytes()[100:250_100]


def test_zerocopysend_respects_flow_control(server: ServerProcess, data_file: Path) -> None:
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/zerocopy?file={data_file}&offset=1&count=250000")
        stream = client.response(sid, until=lambda s: s.received >= WINDOW)
        client.pump(0.5)
        assert stream.received == WINDOW and not stream.done  # stalls at the client's window
        for _ in range(100):
            if stream.done:
                break
            client.ack(sid)
            client.pump(0.2)
        assert stream.ended and stream.body == data_file.read_bytes()[1:250_001]


@pytest.mark.parametrize(
    ("query", "log"),
    [
        ("/zerocopy-bad", "zerocopysend file: "),
        ("/zerocopy?file={f}&offset=299000&count=5000", "runs past the end of the file"),
        ("/zerocopy?file={f}&offset=-1", "offset must be a non-negative int"),
    ],
)
def test_zerocopysend_bad_file_is_500(server: ServerProcess, data_file: Path, query: str, log: str) -> None:
    with RawH2(server.port) as client:
        stream = client.get(query.format(f=data_file))
    assert stream.status == 500
    server.wait_for_log(log)


# -- WSGI file_wrapper -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wsgi") / "big.bin"
    with path.open("wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(1 << 20))
    return path


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_file_wrapper_large_file_slow_reader(serve, big_file: Path) -> None:
    server = serve(WSGI, "--interface", "wsgi")
    size = big_file.stat().st_size
    digest = hashlib.sha256()
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/file?file={big_file}", keep_data=False)
        stream = client.response(sid, until=lambda s: s.received >= WINDOW)
        before = _rss_kib(server.proc.pid)
        client.pump(1.0)
        # A reader that stopped: the server sent one window and holds at most a chunk, not the file.
        assert stream.received == WINDOW and not stream.done
        assert stream.header(b"content-length") == str(size).encode()
        assert _rss_kib(server.proc.pid) - before < 8 * 1024
        stream.keep_data = True
        for _ in range(5000):
            if stream.done:
                break
            client.ack(sid)
            client.pump(0.2)
            digest.update(stream.data)
            stream.data.clear()
        assert stream.ended and stream.reset is None
        assert stream.received == size
    # The first window's bytes were not kept; check the rest of the file against what arrived.
    expected = hashlib.sha256()
    with big_file.open("rb") as fh:
        fh.seek(WINDOW)
        while chunk := fh.read(1 << 20):
            expected.update(chunk)
    assert digest.hexdigest() == expected.hexdigest()


def test_file_wrapper_curl_and_head(serve, big_file: Path, tmp_path: Path) -> None:
    server = serve(WSGI, "--interface", "wsgi")
    out = tmp_path / "out.bin"
    url = f"{server.url}/file?file={big_file}"
    subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", str(out), url], check=True, timeout=60)
    assert out.stat().st_size == big_file.stat().st_size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big_file.read_bytes()).digest()
    with RawH2(server.port) as client:
        stream = client.get(f"/file?file={big_file}", method="HEAD")
    assert stream.status == 200 and stream.body == b"" and stream.reset is None
    assert stream.header(b"content-length") == str(big_file.stat().st_size).encode()


def test_file_wrapper_client_reset_mid_file(serve, big_file: Path) -> None:
    server = serve(WSGI, "--interface", "wsgi")
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/file?file={big_file}", keep_data=False)
        client.response(sid, until=lambda s: s.received >= WINDOW)
        client.reset(sid, ErrorCodes.CANCEL)
        assert client.get(f"/file?file={big_file}", method="HEAD").status == 200  # the server carries on
