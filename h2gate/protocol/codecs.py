"""Which HTTP/2 codec serves (``--codec``): h2, the default install, or ngh2, the optional native one.

``auto`` takes ngh2 (``pip install 'h2gate[fast]'``) when a release of the
tested minor range imports, h2 otherwise; ``h2`` and ``ngh2`` choose
explicitly, and ``ngh2`` without the package is a startup error that says what
to install. The answer is taken once per process: every connection then gets a
new codec of that kind (:func:`new_codec`).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable

from h2gate.errors import StartupError
from h2gate.protocol.codec import Codec
from h2gate.protocol.h2codec import H2Codec

INSTALL_HINT = "--codec ngh2 needs the ngh2 package: pip install 'h2gate[fast]'"
#: The ngh2 releases tested with h2gate (the ``fast`` extra pins the same range): [low, high).
TESTED = ((0, 3), (0, 4))


@functools.cache
def _ngh2_version() -> str | None:
    """The installed ngh2's version if it imports, else None."""
    try:
        import ngh2
    except ImportError:
        return None
    return str(getattr(ngh2, "__version__", None) or importlib.metadata.version("ngh2"))


def _tested(version: str) -> bool:
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = TESTED
    return low <= release < high


def resolve(choice: str) -> str:
    """The codec ``choice`` (auto, h2, ngh2) comes to: "h2" or "ngh2". Raises StartupError for a missing ngh2."""
    version = _ngh2_version()
    if choice == "auto":
        return "ngh2" if version is not None and _tested(version) else "h2"
    if choice == "ngh2" and version is None:
        raise StartupError(INSTALL_HINT)
    return choice


def describe(choice: str) -> str:
    """The codec ``choice`` serves with, for the startup banner: name, version, and why if ``auto``."""
    name = resolve(choice)
    if name == "ngh2":
        version = _ngh2_version() or "?"
        note = "" if _tested(version) else f", untested (h2gate is tested with {_range()})"
        return f"ngh2 {version} (libnghttp2{note})"
    text = f"h2 {importlib.metadata.version('h2')}"
    if choice == "auto":
        installed = _ngh2_version()
        if installed is None:
            text += " (pip install 'h2gate[fast]' for the native codec)"
        else:
            text += f" (ngh2 {installed} is installed but untested: h2gate is tested with {_range()}; --codec ngh2)"
    return text


def _range() -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = TESTED
    return f"ngh2>={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


@functools.cache
def _factory(choice: str) -> Callable[[], Codec]:
    if resolve(choice) == "ngh2":
        from h2gate.protocol.ngh2codec import Ngh2Codec

        return Ngh2Codec
    return H2Codec


def new_codec(choice: str) -> Codec:
    """A fresh codec for one connection, of the kind ``choice`` resolves to."""
    return _factory(choice)()
