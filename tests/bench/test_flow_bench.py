"""A smoke run of bench/flow.py with a tiny size: it starts h2gate, moves bytes both ways and prints its table.

Only the harness is checked (every transfer completes, each row and figure is
printed); the figures themselves are never compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_flow_script_moves_every_byte_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "bench/flow.py", "--size", "2", "--rtts", "0,20", "--servers", "h2gate,h2gate-fixed",
         "--time-limit", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    transfers = [line for line in lines if line.strip().startswith("round 1")]
    assert len(transfers) == 2 * 3 * 2, done.stdout  # 2 RTTs x (link, h2gate, h2gate-fixed) x up/down
    assert all("2.0 MB in" in line and "MB/s " in line for line in transfers), done.stdout
    table = lines[lines.index(next(line for line in lines if line.startswith("server"))) + 1 :]
    assert [row.split()[0] for row in table] == ["link", "h2gate", "h2gate-fixed"], done.stdout


@pytest.mark.timeout(120)
def test_flow_script_serves_h2gate_from_another_python(tmp_path: Path) -> None:
    """--h2gate-python: the row as released (a venv's h2gate), as run.py and idle_memory.py take it."""
    tree = tmp_path / "installed"
    shutil.copytree(ROOT / "h2gate", tree / "h2gate")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tree} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "bench/flow.py", "--size", "1", "--rtts", "0", "--servers", "h2gate",
         "--h2gate-python", str(python), "--time-limit", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "h2gate 0.1.0 pure ready on port" in done.stdout, done.stdout
    assert sum("1.0 MB in" in line for line in done.stdout.splitlines()) == 4, done.stdout  # link + h2gate, up/down
