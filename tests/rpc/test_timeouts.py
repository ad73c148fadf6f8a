"""The server's timeouts as a gRPC stream meets them (docs/grpc.md, "Limits that matter")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import Certs
from tests.rpc.conftest import check_clean_exit, start_server
from tests.rpc.test_matrix import Outbox


@pytest.mark.parametrize("kind", ["asgi-asyncio", "wsgi"])
def test_a_quiet_client_side_is_reset_after_the_body_timeout(kind: str, certs: Certs, probegen: Path, pb: Any) -> None:
    """A bidi stream whose client sends nothing for --body-timeout is reset (CANCEL): 0 turns that off."""
    target = start_server(f"{kind}/h2c", certs, probegen, "--body-timeout", "1")
    try:
        target.server.wait_ready()
        with target.channel() as channel:
            out = Outbox()
            out.put(pb.Msg(seq=0))
            call = pb.ProbeStub(channel).Bidi(iter(out), timeout=30)
            assert next(call).seq == 0
            time.sleep(2.5)
            with pytest.raises(grpc.RpcError) as caught:
                out.put(pb.Msg(seq=1))
                next(call)
            assert caught.value.code() == grpc.StatusCode.CANCELLED  # type: ignore[attr-defined]
            out.close()
    finally:
        check_clean_exit(target)
    target = start_server(f"{kind}/h2c", certs, probegen, "--body-timeout", "0")
    try:
        target.server.wait_ready()
        with target.channel() as channel:
            out = Outbox()
            out.put(pb.Msg(seq=0))
            call = pb.ProbeStub(channel).Bidi(iter(out), timeout=30)
            assert next(call).seq == 0
            time.sleep(2.5)
            out.put(pb.Msg(seq=1))
            assert next(call).seq == 1
            out.close()
            assert list(call) == []
    finally:
        check_clean_exit(target)
