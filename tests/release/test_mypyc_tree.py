"""The mypyc build (bench/mypyc_tree.py) behaves as the pure-Python one: the conformance and attack suites pass.

Opt-in with ``H2GATE_TEST_MYPYC=1``: compiling takes minutes of CPU and needs mypyc, a C compiler and the
Python headers, so the default run skips it and says why. mypyc compiles code as its annotations say, which
can differ from what CPython does (bench/README.md, "Round four: mypyc", has the case that did); this is the
check that the copy still answers clients as the checkout does, with both codecs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(5400),
    pytest.mark.skipif(
        os.environ.get("H2GATE_TEST_MYPYC") != "1", reason="the mypyc build runs with H2GATE_TEST_MYPYC=1"
    ),
]


def test_compiled_copy_passes_the_conformance_and_attack_suites(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypyc") is None:
        pytest.fail("H2GATE_TEST_MYPYC=1 but mypyc is not installed (pip install mypy)")
    from bench.mypyc_tree import build

    dest = tmp_path / "tree"
    names = build(dest)  # raises SystemExit if a compiled module is not the one imported from the copy
    for hot in ("h2gate.protocol.core", "h2gate.protocol.driver", "h2gate.http.validate", "h2gate.asgi.http"):
        assert hot in names, f"{hot} was not compiled: {names}"
    codecs = ["h2"] + (["ngh2"] if importlib.util.find_spec("ngh2") else [])
    for codec in codecs:
        # cwd=dest: ``python -m pytest`` puts the copy first on sys.path, and the servers the tests start
        # (``python -m h2gate`` from dest/tests) find it through PYTHONPATH.
        env = {**os.environ, "PYTHONPATH": str(dest), "H2GATE_CODEC": codec}
        suites = ["tests/conformance", "tests/attacks"]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *suites],
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
            timeout=2400,
        )
        assert done.returncode == 0, f"--codec {codec}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
