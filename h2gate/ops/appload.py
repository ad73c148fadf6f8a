"""Importing the user's application from ``MODULE:ATTRIBUTE``.

Mistakes in the name (no such module, no such attribute, not callable) become
one-line :class:`AppLoadError`s. An exception raised while the app's own module
runs (a SyntaxError, a missing dependency, a bad setting) is the app's bug: it
becomes an AppLoadError too, one line naming the exception, followed by the
frames of the app's own code only (not importlib's, h2gate's, click's, the
standard library's or installed packages'), so the line that matters is not
buried under fifty that do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import os
import sys
import sysconfig
import traceback
from typing import Any

from h2gate.asgi.types import ASGIApp, Receive, Scope, Send
from h2gate.errors import AppLoadError


def import_app(spec: str, *, factory: bool = False, app_dir: str = ".") -> Any:
    """Import and return the object named by ``spec``; raises AppLoadError."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppLoadError(f"application {spec!r} must be given as MODULE:ATTRIBUTE, e.g. myapp:app")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a failure to find the named module (or a parent package) is ours
        # to explain; a missing import inside the app is the app's traceback.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import module {module_name!r}: no such module (searched from {path})") from None
        raise AppLoadError(describe_failure(f"cannot import {module_name!r}", exc)) from None
    except Exception as exc:
        raise AppLoadError(describe_failure(f"cannot import {module_name!r}", exc)) from None
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise AppLoadError(f"{spec} is not callable (it is a {type(obj).__name__})")
    if factory:
        try:
            inspect.signature(obj).bind()
        except TypeError as exc:
            raise AppLoadError(f"factory {spec} could not be called without arguments: {exc}") from None
        except ValueError:
            pass  # no signature to check (some builtins): just call it
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(describe_failure(f"factory {spec} failed", exc)) from None
        if not callable(obj):
            raise AppLoadError(f"factory {spec} returned {type(obj).__name__}, which is not callable")
    return obj


def _not_the_apps() -> tuple[str, ...]:
    """Directories whose frames are not the app's own: h2gate, click, the standard library, installed packages."""
    import click

    dirs = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(click.__file__)}
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            dirs.add(sysconfig.get_paths()[name])
    return tuple(os.path.join(d, "") for d in dirs)


def describe_failure(what: str, exc: BaseException) -> str:
    """``what: ExceptionType: message`` and, below it, the frames of the app's own code that led there.

    With no frame of the app's own (the error is in a library it calls), the innermost frame is shown.
    """
    text = str(exc)
    lines = [f"{what}: {type(exc).__name__}: {text}" if text else f"{what}: {type(exc).__name__}"]
    frames = traceback.extract_tb(exc.__traceback__)
    outside = _not_the_apps()
    own = [f for f in frames if not f.filename.startswith("<") and not f.filename.startswith(outside)]
    if not own and frames and not isinstance(exc, SyntaxError):
        own = [frames[-1]]
    lines += [line.rstrip("\n") for line in traceback.format_list(own)]
    return "\n".join(" ".join(lines[0].split()) if i == 0 else line for i, line in enumerate(lines))


def is_asgi2(app: Any) -> bool:
    """True for the ASGI 2 double-callable style ``app(scope)(receive, send)``.

    Decided from the signature without calling the app: an ASGI 3 app is a
    coroutine function (or object with one as ``__call__``) of three arguments.
    """
    if inspect.isclass(app):
        return not hasattr(app, "__await__")
    direct = inspect.isfunction(app) or inspect.ismethod(app) or isinstance(app, functools.partial)
    call = app if direct else getattr(app, "__call__", app)  # noqa: B004
    if inspect.iscoroutinefunction(call):
        return False
    try:
        params = [
            p
            for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and not variadic


def as_asgi3(app: Any) -> ASGIApp:
    """Wrap an ASGI 2 app so the rest of the server only sees ASGI 3."""
    if not is_asgi2(app):
        return app  # type: ignore[no-any-return]

    async def asgi2_adapter(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi2_adapter


def _is_async(fn: Any) -> bool:
    """A coroutine function, also one marked as such by asgiref on Python < 3.12."""
    if inspect.iscoroutinefunction(fn):
        return True
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    return marker is not None and getattr(fn, "_is_coroutine", None) is marker


def _required_positional(fn: Any) -> tuple[list[str], bool] | None:
    """Names of required positional parameters and whether ``*args`` is accepted; None if unknown."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return names, any(p.kind == p.VAR_POSITIONAL for p in params)


def detect_interface(app: Any, spec: str) -> str:
    """``"asgi"`` or ``"wsgi"``, decided from the app's call signature without calling it.

    ASGI 3: a coroutine function (or an object whose ``__call__`` is one) of
    (scope, receive, send). ASGI 2: a class, or a callable of one argument
    (scope). WSGI: a plain callable of (environ, start_response), e.g. Flask
    and Django's WSGIHandler. Raises AppLoadError when the signature does not say.
    """
    if inspect.isclass(app):
        shape = _required_positional(app)  # the __init__ signature, self excluded
        if shape is not None and len(shape[0]) == 2 and not shape[1]:
            return "wsgi"  # PEP 3333 allows a class: instantiating it is the call
        return "asgi"  # ASGI 2: app(scope) builds the instance
    direct = inspect.isfunction(app) or inspect.ismethod(app) or isinstance(app, functools.partial)
    call = app if direct else getattr(app, "__call__", app)  # noqa: B004
    if _is_async(call) or (isinstance(app, functools.partial) and _is_async(app.func)):
        return "asgi"
    shape = _required_positional(call)
    if shape is not None:
        names, variadic = shape
        if len(names) == 2 and not variadic:
            return "wsgi"
        if len(names) in (1, 3) and not variadic:
            return "asgi"  # ASGI 2 app(scope), or a sync-looking ASGI 3 wrapper that returns an awaitable
    raise AppLoadError(
        f"cannot tell whether {spec} is an ASGI or a WSGI application from its signature "
        f"({type(app).__name__} taking {_describe(shape)}); pass --interface asgi or --interface wsgi"
    )


def _describe(shape: tuple[list[str], bool] | None) -> str:
    if shape is None:
        return "an unknown signature"
    names, variadic = shape
    args = ", ".join(names + (["*args"] if variadic else []))
    return f"({args})"
