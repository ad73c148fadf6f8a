"""Server shutdown during a bidi stream: GOAWAY, the stream goes on within the grace period, never a hang."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import Certs
from tests.rpc.conftest import COMBOS, check_clean_exit, start_server
from tests.rpc.test_matrix import Outbox


@pytest.mark.parametrize("combo", COMBOS)
def test_stream_finishes_within_the_grace_period(combo: str, certs: Certs, probegen: Path, pb: Any) -> None:
    target = start_server(combo, certs, probegen, "--graceful-timeout", "10")
    try:
        target.server.wait_ready()
        with target.channel() as channel:
            out = Outbox()
            out.put(pb.Msg(seq=0))
            call = pb.ProbeStub(channel).Bidi(iter(out), timeout=30)
            assert next(call).seq == 0
            target.server.send_signal()
            target.server.wait_for_log("stopping gracefully")
            for seq in (1, 2):  # the stream in flight is served on, both ways
                out.put(pb.Msg(seq=seq))
                assert next(call).seq == seq
            out.close()
            assert list(call) == [] and call.code() == grpc.StatusCode.OK
    finally:
        check_clean_exit(target)


@pytest.mark.parametrize("combo", COMBOS)
def test_stream_past_the_grace_period_ends_unavailable(combo: str, certs: Certs, probegen: Path, pb: Any) -> None:
    target = start_server(combo, certs, probegen, "--graceful-timeout", "1")
    try:
        target.server.wait_ready()
        with target.channel() as channel:
            out = Outbox()
            out.put(pb.Msg(seq=0))
            call = pb.ProbeStub(channel).Bidi(iter(out), timeout=30)
            assert next(call).seq == 0
            started = time.monotonic()
            target.server.send_signal()
            with pytest.raises(grpc.RpcError) as caught:
                next(call)  # the client never ends its side: the server gives up after 1 s
            assert time.monotonic() - started < 10
            code = caught.value.code()  # type: ignore[attr-defined]
            out.close()
        assert code == grpc.StatusCode.UNAVAILABLE, (code, caught.value)
    finally:
        check_clean_exit(target)
