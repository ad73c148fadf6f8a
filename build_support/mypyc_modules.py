"""Which of h2gate's modules mypyc compiles: the one list, ``[tool.h2gate.mypyc]`` in pyproject.toml.

Read by setup.py (the platform wheels, ``H2GATE_MYPYC=1``) and by bench/mypyc_tree.py (a compiled copy
of a checkout for A/B runs), so both compile the same set. Standard library only: it runs inside the
isolated build environment before anything else is installed there. Kept outside the h2gate package (an
installed h2gate never needs it) and shipped in the sdist (MANIFEST.in), which builds wheels too.
"""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path


def lists(root: Path) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:
    """(compile patterns, leave-out: why, build requirements) from ``root``/pyproject.toml."""
    table = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["h2gate"]["mypyc"]
    return tuple(table["compile"]), dict(table["leave-out"]), tuple(table["requires"])


def chosen(root: Path) -> list[str]:
    """The files the compile patterns match under ``root`` (posix, relative), less leave-out and ``__init__``.

    Package ``__init__`` modules stay interpreted: they run once, and a compiled one would hide the
    package's ``.py`` fallback from tools that read the package directory.
    """
    compile_patterns, leave_out, _ = lists(root)
    matches = (Path(p) for pattern in compile_patterns for p in glob.glob(str(root / pattern)))
    found = {p.relative_to(root).as_posix() for p in matches}
    return sorted(p for p in found if not p.endswith("/__init__.py") and p not in leave_out)
