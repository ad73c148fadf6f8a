"""What compiled modules say to mypyc in their source; nothing here does anything when interpreted.

The release wheel compiles the modules ``[tool.h2gate.mypyc]`` lists
(pyproject.toml). mypyc turns a class into a native class unless told
otherwise, and a native subclass of a class it did not compile (a
``logging.Handler``, an asyncio loop, an exception) is freed without clearing
its weak references (mypyc 2.4.1): their callbacks never run, so the
``WeakSet`` that ``logging`` keeps of every handler, or a ``WeakKeyDictionary``
keyed by the event loop (anyio's), keeps a pointer to freed memory and the
interpreter crashes in a later garbage collection or at exit. Such classes
carry ``@mypyc_attr(native_class=False)``: compiled methods, an ordinary type.
``tests/release/test_compiled_source.py`` requires it of every one, and
``tests/release/test_weakrefs.py`` checks the callbacks on the compiled wheel.

:func:`caused` stands for ``raise ... from ...``, which mypyc 2.4.1 compiles
without the cause.

``mypy_extensions`` (which mypyc reads the decorator from) is mypy's, not a
dependency of h2gate: at run time the decorator is the no-op below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:
        """mypyc reads the decorator's arguments at compile time; run, it returns the class as it is."""
        return lambda cls: cls


E = TypeVar("E", bound=BaseException)


def caused(error: E, cause: BaseException | None) -> E:
    """``raise caused(error, cause)`` for ``raise error from cause`` in a compiled module.

    mypyc 2.4.1 compiles ``raise X from Y`` as ``raise X``: the cause is lost
    (a test that read ``__cause__`` of a TLS failure found it None) and ``from
    None`` no longer hides the exception being handled. Setting ``__cause__``
    does both, as ``from`` does (``tests/release/test_compiled_source.py``
    keeps ``from`` out of compiled modules).
    """
    error.__cause__ = cause
    return error
