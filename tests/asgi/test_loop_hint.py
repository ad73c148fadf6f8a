"""An app that needs asyncio, run with --loop trio, gets a log line that names --loop asyncio."""

from __future__ import annotations

import asyncio

import pytest

from h2gate.asgi.runner import LOOP_HINT, AppRunner, loop_hint
from tests.conftest import TESTS, ServerProcess, h2c_client


class Bridged(AppRunner):
    bridged = True


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _chained() -> BaseException:
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError as inner:
            raise LookupError("the framework wrapped it") from inner
    except LookupError as outer:
        return outer
    raise AssertionError


@pytest.mark.parametrize(
    ("exc", "hinted"),
    [
        (_raised(RuntimeError("no running event loop")), True),
        (_raised(RuntimeError("There is no current event loop in thread 'MainThread'.")), True),
        (_raised(TypeError("trio.run received unrecognized yield message <_GatheringFuture pending>.")), True),
        (_chained(), True),
        (ExceptionGroup("group", [ValueError("x"), RuntimeError("no running event loop")]), True),
        (_raised(ValueError("no running event loop")), False),  # the words alone, in another type
        (_raised(RuntimeError("something else")), False),
        (_raised(TypeError("unsupported operand")), False),
    ],
)
def test_recognised_failures(exc: BaseException, hinted: bool) -> None:
    assert loop_hint(AppRunner(None), exc) == (LOOP_HINT if hinted else "")  # type: ignore[arg-type]
    assert loop_hint(Bridged(None), exc) == ""  # type: ignore[arg-type]  # under asyncio it is the app's own


def _serve(app: str, *flags: str, cwd=TESTS) -> ServerProcess:  # type: ignore[no-untyped-def]
    return ServerProcess([app, "-b", "127.0.0.1:0", *flags], cwd=cwd).wait_ready()


@pytest.mark.parametrize(
    ("app", "cwd", "path", "cause"),
    [
        ("mysite.asgi:application", TESTS / "djproject", "/", "TypeError: trio.run received unrecognized yield"),
        ("apps.loops:running_loop", TESTS, "/", "RuntimeError: no running event loop"),
    ],
    ids=["django", "get_running_loop"],
)
def test_apps_that_need_asyncio_name_the_option(app: str, cwd, path: str, cause: str) -> None:  # type: ignore[no-untyped-def]
    server = _serve(app, "--loop", "trio", cwd=cwd)
    try:
        with h2c_client() as client:
            assert client.get(server.url + path).status_code == 500
            assert client.get(server.url + path).status_code == 500
    finally:
        server.stop()
    errors = [line for line in server.lines if "[ERROR]" in line]
    assert len(errors) == 2, server.output
    for line in errors:
        assert line.endswith("GET /: exception in the app" + LOOP_HINT), line
    assert cause in server.output


def test_the_same_app_under_asyncio_and_an_own_bug_under_trio_get_no_hint() -> None:
    for app, flags in (("mysite.asgi:application", []), ("apps.loops:own_bug", ["--loop", "trio"])):
        cwd = TESTS / "djproject" if app.startswith("mysite") else TESTS
        server = _serve(app, *flags, cwd=cwd)
        try:
            with h2c_client() as client:
                status = client.get(server.url + "/").status_code
        finally:
            server.stop()
        assert status == (200 if app.startswith("mysite") else 500)
        assert "--loop asyncio" not in server.output
