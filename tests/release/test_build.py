"""Which build the suites test, and that ``h2gate --version`` and the startup block tell it truly.

tests/run.sh runs the whole suite on the editable checkout (pure Python) and then tests/conformance,
tests/attacks and this file against the compiled wheel it builds (``H2GATE_MYPYC=1``), installed in a
directory on ``PYTHONPATH`` that shadows the checkout, with ``H2GATE_TEST_BUILD=compiled``. These tests
fail when the h2gate under test, or the one the servers they start import, is not the build asked for:
without them a shadowing mistake would run the compiled suites on the checkout and pass.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

import h2gate
from tests.conftest import ServerProcess, h2c_client

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = os.environ.get("H2GATE_TEST_BUILD", "pure")


def _compiled_modules() -> list[str]:
    sys.path.insert(0, str(ROOT / "build_support"))
    try:
        from mypyc_modules import chosen
    finally:
        sys.path.remove(str(ROOT / "build_support"))
    return [path.removesuffix(".py").replace("/", ".") for path in chosen(ROOT)]


def _is_extension(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    return isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def test_the_build_under_test_is_the_one_asked_for() -> None:
    installed_from = Path(h2gate.__file__).resolve().parent
    names = _compiled_modules()
    assert "h2gate.protocol.core" in names and len(names) > 30, names
    native = {name for name in names if _is_extension(name)}
    if EXPECTED == "compiled":
        assert installed_from != ROOT / "h2gate", "the checkout shadows the compiled wheel"
        assert h2gate.build() == h2gate.COMPILED
        assert native == set(names), f"not compiled: {sorted(set(names) - native)}"
        for name in names:  # the .py fallback ships beside each extension module
            assert (installed_from.parent / (name.replace(".", "/") + ".py")).is_file(), name
    else:
        assert EXPECTED == "pure", f"H2GATE_TEST_BUILD={EXPECTED!r}: compiled or pure"
        assert h2gate.build() == h2gate.PURE
        assert native == set(), f"extension modules in a pure build: {sorted(native)}"


def test_servers_the_tests_start_run_the_same_build() -> None:
    server = ServerProcess(["h2gate.examples.hello:app", "-b", "127.0.0.1:0"]).wait_ready()
    try:
        with h2c_client() as client:
            assert client.get(server.url + "/").status_code == 200
    finally:
        assert server.stop() == 0
    assert f"h2gate {h2gate.__version__} ({h2gate.build()}) serving ASGI app" in server.output
    expected = h2gate.COMPILED if EXPECTED == "compiled" else h2gate.PURE
    assert f"({expected}) serving" in server.output
