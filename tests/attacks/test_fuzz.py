"""Property-based fuzzing: random and mutated frame sequences against one real server.

Whatever a client sends after a valid preface, the server reacts in a defined
way within a bound (an answer to our closing PING, a GOAWAY, RST_STREAMs or a
close: never silence), the process stays alive, a fresh client is served,
and nothing is logged at ERROR (nor any traceback) beyond an allow-list of our own messages.
"""

from __future__ import annotations

import re
import signal
import struct
from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame, PingFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.attacks.conftest import bystander_served, rss_kib
from tests.conformance.frames import (
    CONTINUATION,
    DATA,
    HEADERS,
    Peer,
    PeerClosed,
    raw_frame,
    request_headers,
)
from tests.conftest import Certs, ServerProcess

#: Seconds the server gets to react to one sequence.
REACTION_BOUND = 3.0
#: Growth of the server's memory over the whole fuzz run, in MiB.
FUZZ_MEMORY_BOUND_MB = 40


@pytest.fixture(scope="module")
def fuzz_server(certs: Certs) -> Iterator[ServerProcess]:
    # A short header timeout: a sequence may leave a header block open on purpose.
    args = ["apps.flow:app", "--loop", "trio", "--no-access-log", "--header-timeout", "1", "-b", "127.0.0.1:0"]
    proc = ServerProcess(args).wait_ready()
    bystander_served(proc)
    _baseline[proc.proc.pid] = rss_kib(proc)
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


_baseline: dict[int, int] = {}  # server pid -> VmRSS (KiB) before any fuzzing


stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1])
frame_types = st.one_of(st.integers(0, 9), st.integers(10, 255))
payloads = st.binary(max_size=48)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, int, int, int, bytes]:
    """One frame: random bytes, or a valid request header block with mutated flags/stream."""
    kind = draw(st.sampled_from(["random", "random", "request", "data", "continuation"]))
    flags = draw(st.integers(0, 255))
    sid = draw(stream_ids)
    if kind == "request":
        return kind, HEADERS, flags, sid, b""
    if kind == "data":
        return kind, DATA, flags, sid, draw(payloads)
    if kind == "continuation":
        return kind, CONTINUATION, flags, sid, draw(payloads)
    return kind, draw(frame_types), flags, sid, draw(payloads)


def _serialize(peer: Peer, frame: tuple[str, int, int, int, bytes]) -> bytes:
    kind, ftype, flags, sid, payload = frame
    if kind == "request":
        payload = peer.block(request_headers(f"/hello?fuzz={sid}"))
    if ftype in (HEADERS, DATA) and flags & 0x8:  # PADDED: keep the pad length inside the payload
        payload = bytes([min(payload[0] if payload else 0, max(len(payload) - 1, 0))]) + payload
    if ftype == HEADERS and flags & 0x20:  # PRIORITY: 5 bytes of dependency/weight first
        payload = struct.pack(">IB", 0, 16) + payload
    return raw_frame(ftype, flags, sid, payload)


def _reacts(peer: Peer) -> None:
    """Our PING after the sequence is answered, or the connection ends (GOAWAY and/or close) in time."""
    peer.send(PingFrame(0, opaque_data=b"fuzzdone").serialize())
    try:
        peer.wait_for(
            lambda f: isinstance(f, GoAwayFrame) or (isinstance(f, PingFrame) and f.opaque_data == b"fuzzdone"),
            timeout=REACTION_BOUND,
        )
    except PeerClosed:
        pass  # a close is a defined reaction too
    except TimeoutError as exc:
        raise AssertionError(f"no reaction within {REACTION_BOUND}s") from exc


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(frames(), min_size=1, max_size=8))
def test_random_frame_sequences(fuzz_server: ServerProcess, sequence: list[tuple[str, int, int, int, bytes]]) -> None:
    peer = Peer("h2c", fuzz_server.port)
    try:
        peer.send(b"".join(_serialize(peer, frame) for frame in sequence))
        _reacts(peer)
    finally:
        peer.close()
    assert fuzz_server.proc.poll() is None, "the server died"
    bystander_served(fuzz_server)


def test_server_survived_the_fuzzing(fuzz_server: ServerProcess) -> None:
    """Runs after the fuzz test (same module server): alive, serving, memory bounded, no internal error."""
    bystander_served(fuzz_server)
    assert fuzz_server.proc.poll() is None
    grown = (rss_kib(fuzz_server) - _baseline[fuzz_server.proc.pid]) / 1024
    assert grown < FUZZ_MEMORY_BOUND_MB, f"server RSS grew by {grown:.1f} MiB"
    unexpected = [line for line in fuzz_server.lines if _unexpected_log_line(line)]
    assert not unexpected, unexpected


#: ERROR lines of our own that a fuzz sequence may cause (none so far: peer mistakes log at INFO/WARNING).
ALLOWED_ERRORS: tuple[re.Pattern[str], ...] = ()


def _unexpected_log_line(line: str) -> bool:
    """An ERROR/CRITICAL line that is not on the allow-list, or any traceback line."""
    if "Traceback" in line:
        return True
    if "[ERROR]" not in line and "[CRITICAL]" not in line:
        return False
    return not any(rx.search(line) for rx in ALLOWED_ERRORS)
