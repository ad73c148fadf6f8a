"""``--codec``: the startup log names the codec, and asking for a missing ngh2 is one clear line."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TESTS, ServerProcess


def _without_ngh2(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import ngh2`` fails, as where the fast extra is not installed."""
    (tmp_path / "ngh2.py").write_text("raise ImportError('ngh2 is not installed here')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_codec_ngh2_without_ngh2_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "h2gate", "apps.basic:app", "--codec", "ngh2", "-b", "127.0.0.1:0"],
        cwd=TESTS, env=_without_ngh2(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "h2gate: error: --codec ngh2 needs the ngh2 package: pip install 'h2gate[fast]'"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def test_auto_without_ngh2_serves_on_h2_and_says_how_to_get_it(tmp_path: Path) -> None:
    server = ServerProcess(
        ["apps.basic:app", "-b", "127.0.0.1:0"], env=_without_ngh2(tmp_path) | {"H2GATE_CODEC": "auto"}
    )
    try:
        server.wait_ready()
        line = server.wait_for_log("HTTP/2 codec: ")
        assert "HTTP/2 codec: h2 " in line and "pip install 'h2gate[fast]'" in line
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.skipif(importlib.util.find_spec("ngh2") is None, reason="ngh2 is not installed")
@pytest.mark.parametrize("codec", ["auto", "ngh2"])
def test_with_ngh2_the_banner_names_it(codec: str) -> None:
    server = ServerProcess(["apps.basic:app", "-b", "127.0.0.1:0"], env={"H2GATE_CODEC": codec})
    try:
        server.wait_ready()
        assert "(libnghttp2)" in server.wait_for_log("HTTP/2 codec: ngh2 ")
    finally:
        server.stop(signal.SIGKILL)
