"""gRPC through nginx's grpc_pass (conf/nginx.conf) to h2gate over h2c, with a real grpcio client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.config.test_conf_examples import free_port, localized_nginx_conf
from tests.conftest import Certs
from tests.rpc.conftest import Target, check_clean_exit, start_server
from tests.rpc.test_matrix import Outbox, wait_seen


@pytest.fixture(scope="module", params=["asgi-trio", "wsgi"])
def via_nginx(request: pytest.FixtureRequest, certs: Certs, probegen: Path, tmp_path_factory: Any) -> Iterator[Any]:
    """A grpcio stub talking TLS to nginx, which forwards with grpc_pass to h2gate (h2c)."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    if os.geteuid() != 0:
        pytest.skip("nginx's compiled-in temp directories (/var/lib/nginx) need root")
    tmp = tmp_path_factory.mktemp("nginx")
    target: Target = start_server(f"{request.param}/h2c", certs, probegen)
    try:
        target.server.wait_ready()
    except BaseException:
        target.server.stop()
        raise
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(localized_nginx_conf(target.port, port, certs, tmp))
    base = ["nginx", "-c", str(conf), "-p", f"{tmp}/", "-e", str(tmp / "error.log")]
    proc = subprocess.Popen([*base, "-g", f"pid {tmp}/nginx.pid; daemon off;"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        credentials = grpc.ssl_channel_credentials(Path(certs.ca_pem).read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            yield channel
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        check_clean_exit(target)


def test_calls_through_nginx(via_nginx: grpc.Channel, pb: Any) -> None:
    probe = pb.ProbeStub(via_nginx)
    reply, call = probe.Unary.with_call(pb.Msg(text="metadata"), metadata=[("x-asked", "q")], timeout=10)
    assert reply.text == "q"
    assert ("x-tail", "in trailers") in call.trailing_metadata()  # trailers make it through nginx
    # so does grpc-timeout (grpcio rounds it up to a coarse unit: a few ms over)
    assert 0 < int(probe.Unary(pb.Msg(text="deadline"), timeout=5).text) <= 5100
    with pytest.raises(grpc.RpcError) as caught:
        probe.Unary(pb.Msg(text="error"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert [r.seq for r in probe.ServerStream(pb.Msg(count=3), timeout=10)] == [0, 1, 2]


def test_bidi_ping_pong_through_nginx(via_nginx: grpc.Channel, pb: Any) -> None:
    probe = pb.ProbeStub(via_nginx)
    out = Outbox()
    out.put(pb.Msg(seq=0))
    call = probe.Bidi(iter(out), timeout=20)
    for reply in call:
        if reply.seq == 4:
            out.close()
        else:
            out.put(pb.Msg(seq=reply.seq + 1))
    assert call.code() == grpc.StatusCode.OK


def test_cancellation_through_nginx(via_nginx: grpc.Channel, pb: Any) -> None:
    probe = pb.ProbeStub(via_nginx)
    key = uuid.uuid4().hex
    call = probe.ServerStream(pb.Msg(count=1000, delay_ms=50, key=key), timeout=30)
    assert next(call).seq == 0
    call.cancel()
    assert wait_seen(probe, pb, key) not in ("started", "finished", "")
