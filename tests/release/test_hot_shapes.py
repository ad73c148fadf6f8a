"""Code shapes that cost far more than they look, kept out of the modules the release wheel compiles.

These are the per-request modules (``[tool.h2gate.mypyc]``), so a shape found
slow under callgrind once (bench/README.md, "Round seven") is checked in all
of them by reading their source, in the plain test run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.release.test_compiled_source import ROOT, _compiled_sources


def bytes_needles(source: str) -> list[str]:
    """``b"%" in data``-like tests: a one-byte ``bytes`` needle.

    CPython's ``bytes.__contains__`` first tries the needle as an integer, so a
    ``bytes`` needle makes and clears a TypeError every time: about 140 ns
    against 20 for the int ``0x25 in data`` (a ``memchr``), and 2,000
    instructions a request under callgrind for the three NUL/CR/LF tests.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            left = node.left
            if isinstance(left, ast.Constant) and isinstance(left.value, bytes) and len(left.value) == 1:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_sees_the_shape_it_names() -> None:
    assert bytes_needles('if b"%" in raw:\n    pass') == ["line 1: b'%' in raw"]
    assert bytes_needles('ok = b"_" not in name') == ["line 1: b'_' not in name"]
    assert bytes_needles('a = 0x25 in raw\nb = b"h2c" in tokens\nc = "%" in text\nd = name in {b"x"}') == []


@pytest.mark.parametrize("path", _compiled_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_one_byte_bytes_needles_in_compiled_modules(path: Path) -> None:
    assert bytes_needles(path.read_text()) == [], "test for the byte's int value (0x25 in data) instead"
