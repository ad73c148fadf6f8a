"""bench/soak.py: its verdict logic (a growing series fails, a flat one passes) and one short real run.

The short run starts the real server and every client kind for a few seconds:
it proves the script works end to end (table, outcomes, verdict, exit status),
not that memory plateaus, which needs the minutes of a real soak.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import judge, parse_args

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024  # samples are in KiB


def test_flat_series_is_a_plateau() -> None:
    # warm-up growth in the first third, then noise of +-1 MiB around 60 MiB
    series = [40 * MIB, 50 * MIB, 58 * MIB, 61 * MIB, 59 * MIB, 60 * MIB, 61 * MIB, 59 * MIB, 60 * MIB]
    verdict = judge(series)
    assert verdict.plateau, str(verdict)
    assert "PLATEAU" in str(verdict)


def test_growing_series_is_growth() -> None:
    series = [50 * MIB + i * 2 * MIB for i in range(12)]  # +2 MiB per sample, no end in sight
    verdict = judge(series)
    assert not verdict.plateau
    assert verdict.growth_mib == pytest.approx(8.0)
    assert "GROWTH" in str(verdict) and "+8.0 MiB" in str(verdict)


def test_tolerance_is_the_larger_of_absolute_and_relative() -> None:
    series = [100 * MIB] * 3 + [100 * MIB] * 3 + [106 * MIB] * 3  # +6 MiB on 100 MiB
    assert not judge(series, tolerance_mib=4.0, tolerance_ratio=0.05).plateau  # allowed 5 MiB
    assert judge(series, tolerance_mib=4.0, tolerance_ratio=0.10).plateau  # allowed 10 MiB
    assert judge(series, tolerance_mib=7.0, tolerance_ratio=0.05).plateau


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        judge([1, 2])


def test_duration_is_bounded() -> None:
    assert parse_args([]).seconds == 120
    assert parse_args(["--seconds", "8", "--interval", "1"]).seconds == 8
    for bad in (["--minutes", "61"], ["--seconds", "0"], ["--seconds", "2", "--interval", "1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
@pytest.mark.parametrize("flags", [["--app", "asgi", "--loop", "trio"], ["--app", "wsgi"]], ids=["asgi", "wsgi"])
def test_short_soak_runs_clean(flags: list[str]) -> None:
    done = subprocess.run(
        # 5 s is all warm-up (thread pools, TLS caches): the memory verdict is the unit tests' job, not this run's
        [sys.executable, "bench/soak.py", "--seconds", "5", "--interval", "1", "--tolerance-mib", "100", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout + done.stderr
    rows = re.findall(r"^\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+\d+\s+\d+$", done.stdout, re.M)
    assert len(rows) >= 3, out
    assert re.search(r"^verdict: (PLATEAU|GROWTH): mean RSS", done.stdout, re.M), out
    for kind in ("h2load: requests ok", "httpx: uploads ok", "reset: reset mid-response", "churn: one request"):
        assert kind in done.stdout, out
    assert "zero-window: reaped (RST_STREAM)" in done.stdout, out
    assert "ANOMALY" not in done.stdout, out
    assert done.returncode == 0, out
