"""bench/instructions.py: servers started under callgrind, instructions counted per request.

The argv splice is checked without valgrind; the smoke run (tiny counts) needs
it and h2load. Only the harness is checked: each server is counted and a ratio
printed; the figures themselves are never compared.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import VALGRIND, under_valgrind
from bench.servers import ServerSpec

ROOT = Path(__file__).resolve().parents[2]


def _spec(command: list[str]) -> ServerSpec:
    return ServerSpec("B:h2gate-asyncio", lambda port, cert, key: [*command, str(port)], "h2gate")


def test_valgrind_goes_in_front_of_the_program_not_of_env(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    plain = under_valgrind(_spec(["/venv/bin/python", "-m", "h2gate"]), tmp_path).argv(1, cert, key)
    assert plain[: len(VALGRIND)] == list(VALGRIND) and plain[-4:] == ["/venv/bin/python", "-m", "h2gate", "1"]
    installed = ["env", "-u", "PYTHONPATH", "PYTHONPATH=/tree", "/venv/bin/python", "-P", "-m", "h2gate"]
    spliced = under_valgrind(_spec(installed), tmp_path).argv(2, cert, key)
    assert spliced[:4] == installed[:4] and spliced[4 : 4 + len(VALGRIND)] == list(VALGRIND)
    assert spliced[-5:] == [*installed[4:], "2"]
    out_file = next(arg for arg in spliced if arg.startswith("--callgrind-out-file="))
    assert ":" not in Path(out_file.split("=", 1)[1]).name  # the side's "B:" does not reach the file name


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("h2load") is None, reason="needs valgrind and h2load"
)
@pytest.mark.timeout(400)
def test_instructions_script_counts_both_servers() -> None:
    done = subprocess.run(
        [sys.executable, "bench/instructions.py", "--servers", "h2gate-trio,h2gate-asyncio", "--rounds", "1",
         "-n", "100", "--warmup", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no figure" not in done.stdout, done.stdout
    medians = dict(re.findall(r"median (\S+): ([\d,]+) instructions per request", done.stdout))
    assert set(medians) == {"h2gate-trio", "h2gate-asyncio"}, done.stdout
    assert all(int(v.replace(",", "")) > 10_000 for v in medians.values()), done.stdout  # a request is real work
    assert re.search(r"h2gate-asyncio / h2gate-trio: \d+\.\d{4} \(", done.stdout), done.stdout
