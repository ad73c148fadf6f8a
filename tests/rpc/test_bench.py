"""Smoke run of bench/grpc_calls.py with tiny counts: the harness starts servers, checks gRPC and measures.

Only the harness is checked; the figures themselves are never compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
def test_grpc_bench_checks_and_measures() -> None:
    done = subprocess.run(
        [sys.executable, "bench/grpc_calls.py", "--quick", "--servers", "h2gate-trio,h2gate-wsgi", "-n", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith("h2gate-")}
    for name in ("h2gate-trio", "h2gate-wsgi"):
        _name, _version, rate, _ratio, _cpu, non_2xx, check = rows[name][:7]
        assert float(rate.replace(",", "")) > 0 and non_2xx == "0" and check == "ok", done.stdout
