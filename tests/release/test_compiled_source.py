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


#: Bases whose subclasses mypyc builds its own way, never as native classes with weak references.
SPECIAL_BASES = {"Protocol", "NamedTuple", "TypedDict", "enum.Enum", "enum.IntEnum", "Enum", "IntEnum"}


#: Native on purpose, with the reason. TLSStream's base trio.abc.Stream is an ABC that only types it, and no one
#: takes a weak reference to a TLS stream; its methods are the TLS byte path, where a native class's slots pay.
NATIVE_ON_PURPOSE = {"TLSStream"}


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
    assert slice_bounds_with_side_effects("data = data[os.write(fd, data):]") == ["line 1: data[os.write(fd, data):]"]
    assert slice_bounds_with_side_effects("n = os.write(fd, data)\ndata = data[n:]\nrest = data[: len(data)]") == [
        "line 3: data[:len(data)]"
    ]
    assert slice_bounds_with_side_effects("data = data[n:m]\nitem = data[f()]") == []


@pytest.mark.parametrize("path", _compiled_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_slice_bound_calls_in_compiled_modules(path: Path) -> None:
    assert slice_bounds_with_side_effects(path.read_text()) == [], "put the bound in a variable first"


def _foreign(base: ast.expr, ours: set[str], from_h2gate: set[str]) -> bool:
    text = ast.unparse(base)
    if text in SPECIAL_BASES or text == "object":
        return False
    if isinstance(base, ast.Name):
        return base.id not in ours
    return text.split(".")[0] not in from_h2gate


def foreign_native_classes(sources: dict[str, str], allowed: frozenset[str] = frozenset()) -> list[str]:
    """Classes with a base that is not compiled with them and no ``@mypyc_attr(native_class=False)``.

    mypyc 2.4.1 frees a native subclass of an uncompiled class without clearing
    its weak references, so their callbacks never run: ``logging``'s WeakSet of
    handlers kept a freed SinkHandler and the interpreter crashed in a later
    garbage collection (h2gate/compiled.py). ``sources``: module path -> text.
    A base is ours when it is a bare name of a class in these modules, or a
    dotted name whose first part the module imported from h2gate.
    """
    trees = {path: ast.parse(text) for path, text in sources.items()}
    ours = {node.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []
    for path, tree in trees.items():
        from_h2gate = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("h2gate")
            for alias in node.names
        }

        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            marked = any(ast.unparse(d) == "mypyc_attr(native_class=False)" for d in node.decorator_list)
            if (
                any(_foreign(base, ours, from_h2gate) for base in node.bases)
                and not marked
                and node.name not in allowed
            ):
                bases = ", ".join(ast.unparse(base) for base in node.bases)
                found.append(f"{path}:{node.lineno} {node.name}({bases})")
    return found


def test_the_class_check_sees_the_shape_it_names() -> None:
    source = (
        "class Ours: pass\n"
        "class Fine(Ours): pass\n"
        "class Handler(logging.Handler): pass\n"
        "@mypyc_attr(native_class=False)\n"
        "class Marked(logging.Handler): pass\n"
        "class Phase(enum.Enum): pass\n"
        "class Gone(Exception): pass\n"
        "from h2gate.protocol import codec as ev\n"
        "class Event(ev.Event): pass\n"
    )
    assert foreign_native_classes({"m.py": source}) == ["m.py:3 Handler(logging.Handler)", "m.py:7 Gone(Exception)"]


def test_compiled_subclasses_of_uncompiled_classes_are_not_native() -> None:
    sources = {path.relative_to(ROOT).as_posix(): path.read_text() for path in _compiled_sources()}
    found = foreign_native_classes(sources, frozenset(NATIVE_ON_PURPOSE))
    assert found == [], "add @mypyc_attr(native_class=False) (h2gate/compiled.py)"


def raises_with_from(source: str) -> list[str]:
    """``raise X from Y``: mypyc 2.4.1 compiles it as ``raise X``, losing the cause (and ``from None``'s hiding).

    Found when TLS tests on the compiled build read ``__cause__`` of a failed
    handshake and got None. Compiled modules write ``raise caused(X, Y)``
    (h2gate/compiled.py), which sets the cause in both builds.
    """
    return [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Raise) and node.cause is not None
    ]


def test_the_raise_check_sees_the_shape_it_names() -> None:
    source = "raise A() from exc\nraise B() from None\nraise caused(C(), exc)\nraise\n"
    assert raises_with_from(source) == ["line 1: raise A() from exc", "line 2: raise B() from None"]


@pytest.mark.parametrize("path", _compiled_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_raise_from_in_compiled_modules(path: Path) -> None:
    assert raises_with_from(path.read_text()) == [], "write raise caused(error, cause) (h2gate/compiled.py)"


def test_caused_chains_as_from_does() -> None:
    from h2gate.compiled import caused

    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise caused(ValueError("outer"), exc)  # noqa: B904 (what this tests)
    except ValueError as outer:
        assert isinstance(outer.__cause__, KeyError) and outer.__suppress_context__
    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise caused(ValueError("outer"), None)  # noqa: B904
    except ValueError as outer:
        assert outer.__cause__ is None and outer.__suppress_context__
