"""Code shapes that mypyc (the pinned version, ``[tool.h2gate.mypyc]``) compiles wrongly, kept out of compiled modules.

The release wheel is compiled, and mypyc compiles some constructs differently
from CPython. Each check here names one such construct found the hard way;
the source of every module the wheel compiles is read (by ``ast``), so a new
occurrence fails in the plain test run, before any wheel is built.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compiled_sources() -> list[Path]:
    sys.path.insert(0, str(ROOT / "build_support"))
    try:
        from mypyc_modules import chosen
    finally:
        sys.path.remove(str(ROOT / "build_support"))
    return [ROOT / path for path in chosen(ROOT)]


def _side_effects(node: ast.AST | None) -> bool:
    """Whether evaluating ``node`` twice could differ from once: it calls, assigns or awaits."""
    if node is None:
        return False
    return any(isinstance(n, (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)) for n in ast.walk(node))


def slice_bounds_with_side_effects(source: str) -> list[str]:
    """``x[call():]``-like subscripts: mypyc 2.4.1 evaluates a memoryview slice's start twice.

    Found when the compiled build wrote every batch of a log file twice
    (``data = data[os.write(fd, data):]`` in logsink.py called ``os.write``
    twice). Bytes, str and list slices are compiled correctly, but which type a
    slice has is mypy's business; a bound with a side effect in a variable of
    its own is right everywhere.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            if any(_side_effects(part) for part in (node.slice.lower, node.slice.upper, node.slice.step)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_sees_the_shape_it_names() -> None:
    assert slice_bounds_with_side_effects("data = data[os.write(fd, data):]") == [
        "line 1: data[os.write(fd, data):]"
    ]
    assert slice_bounds_with_side_effects("n = os.write(fd, data)\ndata = data[n:]\nrest = data[: len(data)]") == [
        "line 3: data[:len(data)]"
    ]
    assert slice_bounds_with_side_effects("data = data[n:m]\nitem = data[f()]") == []


@pytest.mark.parametrize("path", _compiled_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_slice_bound_calls_in_compiled_modules(path: Path) -> None:
    assert slice_bounds_with_side_effects(path.read_text()) == [], "put the bound in a variable first"
