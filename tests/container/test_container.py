"""The Dockerfile, built and run for real with podman: see tests/container/run.sh for what is checked.

The script needs root, podman and runc (tests/run.sh installs them when it
runs as root) and, the first time, debootstrap and a Debian mirror to make the
local base image. Where it cannot run it exits 77 with the reason, and this
test is skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "tests" / "container" / "run.sh"
SKIP_STATUS = 77
# A cold run makes the base image with debootstrap (about 2 minutes here); later runs take under a minute.
BUDGET = 900


@pytest.mark.timeout(BUDGET + 60)
def test_image_builds_serves_and_stops_gracefully() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: rootful podman (rootless needs subuid/subgid ranges, not set up here)")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (tests/run.sh installs it when run as root)")
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=BUDGET, cwd=ROOT)
    output = result.stdout + result.stderr
    if result.returncode == SKIP_STATUS:
        reason = [line for line in result.stderr.splitlines() if line.startswith("SKIP: ")]
        pytest.skip(reason[-1][6:] if reason else output[-500:])
    assert result.returncode == 0, output
    assert "container test passed" in result.stdout, output
