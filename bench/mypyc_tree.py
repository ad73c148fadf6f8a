"""A copy of this checkout with h2gate's per-request modules compiled by mypyc (issue #22, target 3).

    python bench/mypyc_tree.py /tmp/h2gate-mypyc
    python -P bench/ab.py --servers h2gate-ngh2-asyncio-log,h2gate-ngh2-asyncio-log \\
        --tree-a /tmp/h2gate-plain --tree-b /tmp/h2gate-mypyc
    cd /tmp/h2gate-mypyc && PYTHONPATH=$PWD python -m pytest -q tests/conformance tests/attacks

The released platform wheels are compiled from the same list (setup.py with
``H2GATE_MYPYC=1``; tests/run.sh builds one and runs the suites on it); this
script is for A/B runs of two *checkouts*, compiled. The compiled build is
a *copy* (every file git tracks, as it is in the working tree) because an extension module beside its ``.py``
wins the import: compiling in place would leave a checkout, and an editable
install, running stale code after the next edit. The pure-Python modules stay
in the copy next to the ``.so`` files, so deleting those falls back to them.

What is compiled is a set of patterns (``compile`` in pyproject.toml's
``[tool.h2gate.mypyc]``), so splitting a module in two needs no change here.
A module mypyc refuses is reported with its first error and left out, and
the build is retried without it (the wheel build fails instead); ``leave-out`` names
the ones known to be refused, or to build but break at run time, and why.
mypyc compiles the code as its type annotations say, so behaviour can differ
from CPython where an annotation is looser than the code relies on (one seen:
``ErrorCode | int`` becomes a bare ``int``, losing the enum); the conformance
and attack suites run against the compiled wheel in CI (tests/run.sh) are
the check, not this script.

Needs ``mypy`` (it ships mypyc), a C compiler and the Python headers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What to compile and what to leave out (with why): ``[tool.h2gate.mypyc]`` in pyproject.toml, read by
# build_support/mypyc_modules.py, which setup.py (the released platform wheels) uses too.
sys.path.insert(0, str(ROOT / "build_support"))
from mypyc_modules import chosen  # noqa: E402

_ERROR = re.compile(r"^(h2gate/\S+\.py):\d+: error: (.*)$", re.MULTILINE)


def tracked_copy(source: Path, dest: Path) -> None:
    """Every file git tracks in ``source``, as the working tree has it (uncommitted edits included)."""
    names = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, names):
        src = source / os.fsdecode(name)
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / src.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.relative_to(source))


def compile_tree(dest: Path, files: list[str], attempts: int = 6) -> tuple[list[str], dict[str, str]]:
    """Run mypyc in ``dest`` on ``files``; drop the files it refuses and retry. (compiled, refused: why)."""
    refused: dict[str, str] = {}
    for _ in range(attempts):
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *files], cwd=dest, capture_output=True, text=True, timeout=3600
        )
        if done.returncode == 0:
            return files, refused
        errors = {path: why for path, why in reversed(_ERROR.findall(done.stdout + done.stderr))}
        if not errors or not set(errors) & set(files):
            raise SystemExit(f"mypyc failed:\n{(done.stdout + done.stderr)[-4000:]}")
        for path in errors.keys() & set(files):
            refused[path] = errors[path]
            # A module refused for a type error in a module it imports: that one goes too (it is in `errors`).
        files = [f for f in files if f not in errors]
    raise SystemExit(f"mypyc still failing after {attempts} attempts; refused so far: {refused}")


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def check_imports(dest: Path, files: list[str]) -> list[str]:
    """The compiled modules that do NOT import as extension modules from ``dest`` (empty when all do)."""
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    mod = importlib.import_module(name)\n"
        "    if not mod.__file__.endswith(('.so', '.pyd')): print(name, mod.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(dest)}
    names = [module_name(f) for f in files]
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe, *names], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return [f"import failed ({done.returncode}): {done.stderr.strip()[-2000:]}"]
    return done.stdout.splitlines()


def build(dest: Path, source: Path = ROOT) -> list[str]:
    """Copy ``source`` to ``dest`` and compile it; the compiled modules' names. Raises SystemExit on failure."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        raise SystemExit(f"no Python headers ({include}): install python3-dev or use a Python that ships them")
    if shutil.which(os.environ.get("CC", "gcc")) is None and shutil.which("cc") is None:
        raise SystemExit("no C compiler (gcc/cc) on PATH")
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} exists and is not empty: give a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    tracked_copy(source, dest)
    files, refused = compile_tree(dest, chosen(dest))
    for path, why in sorted(refused.items()):
        print(f"  left out {path}: {why}")
    shutil.rmtree(dest / "build", ignore_errors=True)  # mypyc's C sources and objects: ~100 MB
    if wrong := check_imports(dest, files):
        raise SystemExit("compiled modules not imported from the build:\n" + "\n".join(wrong))
    return [module_name(f) for f in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", type=Path, help="a new directory for the compiled copy")
    p.add_argument("--source", type=Path, default=ROOT, help="the checkout to copy (default: this one)")
    args = p.parse_args(argv)
    names = build(args.dest.resolve(), args.source.resolve())
    print(f"compiled {len(names)} modules into {args.dest}: {', '.join(names)}")
    print(f"use it with PYTHONPATH={args.dest} (python -P ...), or bench/ab.py --tree-b {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
