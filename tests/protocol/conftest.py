"""Every test that drives the core through :class:`tests.protocol.harness.Harness` runs once per codec."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.protocol import harness

#: The codecs behind the seam; ngh2 (the ``fast`` extra) is skipped, saying so, where it is not installed.
CODECS = [
    "h2",
    pytest.param(
        "ngh2", marks=pytest.mark.skipif(importlib.util.find_spec("ngh2") is None, reason="ngh2 is not installed")
    ),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_codec" in metafunc.fixturenames and hasattr(metafunc.module, "Harness"):
        metafunc.parametrize("harness_codec", CODECS, indirect=True)


@pytest.fixture(autouse=True)
def harness_codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """The codec of every Harness the test makes (h2 for tests the parametrization leaves alone)."""
    codec = getattr(request, "param", "h2")
    harness.CODEC = codec
    try:
        yield codec
    finally:
        harness.CODEC = "h2"
