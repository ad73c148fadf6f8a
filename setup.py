"""Compiled wheels: with ``H2GATE_MYPYC=1`` at build time, mypyc compiles the per-request modules.

Everything else about the package is in pyproject.toml. Without the variable this adds nothing and the
wheel is the pure-Python ``py3-none-any`` one. With it, the modules ``[tool.h2gate.mypyc]`` chooses
(build_support/mypyc_modules.py reads the list) become extension modules, one shared library
(``h2gate/_compiled__mypyc.*.so``) plus a small shim ``.so`` beside each ``.py``; the ``.py`` files stay in
the wheel beside them. The backend (build_support/h2gate_backend.py) puts mypy in the build environment.
Editable installs are never compiled.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
if "bdist_wheel" in sys.argv:
    # pip builds in the source tree: a compiled build's extension modules left in build/lib would go into
    # the next pure wheel built here (and stale .py files into either). Each wheel starts from a clean one.
    for stale in ROOT.glob("build/lib*"):
        shutil.rmtree(stale)
ext_modules = []
#: Commands that only write metadata or the sdist (setuptools runs ``egg_info`` to learn the build requirements,
#: before mypy is installed) or make an editable install: never compiled.
NOT_COMPILED = {"egg_info", "dist_info", "sdist", "editable_wheel"}
if os.environ.get("H2GATE_MYPYC") == "1" and not NOT_COMPILED & set(sys.argv[1:]):
    sys.path.insert(0, str(ROOT / "build_support"))
    from mypyc.build import mypycify
    from mypyc_modules import chosen

    os.chdir(ROOT)  # mypycify takes paths relative to here and reads [tool.mypy] from pyproject.toml
    ext_modules = mypycify(chosen(ROOT), opt_level="3", group_name="h2gate._compiled")

setup(ext_modules=ext_modules)
