"""h2gate: an HTTP/2-only application server for Python web apps (ASGI and WSGI)."""

__version__ = "0.1.0"

#: What :func:`build` answers: the platform wheels are compiled by mypyc (setup.py, ``H2GATE_MYPYC=1``);
#: the sdist, the ``py3-none-any`` wheel and a checkout run as pure Python.
COMPILED = "compiled with mypyc"
PURE = "pure Python"


def build() -> str:
    """Which build runs here, for ``--version`` and the startup block: :data:`COMPILED` or :data:`PURE`.

    Decided by what Python imports (or imported) for the protocol core, a module every compiled build
    compiles, rather than by installer metadata, so a stray ``.so`` or a ``PYTHONPATH`` copy is told
    truly. Finding the spec imports ``h2gate.protocol``'s ``__init__``, not the core itself.
    """
    import importlib.machinery
    import importlib.util
    import sys

    module = sys.modules.get("h2gate.protocol.core")
    spec = module.__spec__ if module is not None else importlib.util.find_spec("h2gate.protocol.core")
    compiled = spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    return COMPILED if compiled else PURE
