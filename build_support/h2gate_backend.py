"""The build backend: setuptools' own, plus mypyc among the build requirements when ``H2GATE_MYPYC=1``.

``[build-system] requires`` cannot depend on the environment, and the pure-Python wheel and the sdist must
not pull mypy in. PEP 517 lets the backend add requirements per build (``get_requires_for_build_wheel``),
so this wrapper adds, only when compiling: mypy (which ships mypyc, pinned in ``[tool.h2gate.mypyc]``
``requires``: the suites ran against that compiler's output) and h2gate's runtime dependencies with the
native codec, so mypy sees the same types as ``mypy h2gate`` does in development (an import it cannot
find would fail the build, or compile calls into it as untyped). setup.py does the compiling.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from mypyc_modules import lists
from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every other hook as setuptools has it)


def compiling() -> bool:
    return os.environ.get("H2GATE_MYPYC") == "1"


def _compile_requires() -> list[str]:
    root = Path.cwd()  # PEP 517: hooks run in the source tree
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return [*lists(root)[2], *project["dependencies"], *project["optional-dependencies"]["fast"]]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = _compile_requires() if compiling() else []
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *extra]


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    # An editable install is never compiled (a .so beside the .py would run stale code after the next edit).
    return _setuptools.get_requires_for_build_editable(config_settings)
