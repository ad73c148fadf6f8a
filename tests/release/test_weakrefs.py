"""A freed object's weak-reference callbacks run, on every build: the compiled one broke that once.

mypyc 2.4.1 frees a native subclass of an uncompiled class without clearing its
weak references (h2gate/compiled.py). ``logging`` keeps a WeakSet of every
handler, so a freed compiled SinkHandler stayed in it and a later garbage
collection crashed the test process; a WeakKeyDictionary keyed by the event loop
(anyio keeps one) would do the same with the hosted asyncio loop at exit.
tests/run.sh runs this file against the compiled wheel too.
"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from h2gate.asgi.hosted_loop import HostedLoop
from h2gate.asgi.lifespan import LifespanFailure
from h2gate.asgi.push import PushMistake
from h2gate.errors import SendTimeout
from h2gate.observe.logs import JSONFormatter
from h2gate.observe.logsink import LineSink, SinkHandler
from h2gate.protocol.codec import StreamGone
from h2gate.protocol.replies import HeaderError


def _loop() -> Any:
    loop = HostedLoop()
    loop.close()
    return loop


MAKERS: dict[str, Callable[[], Any]] = {
    "SinkHandler": lambda: SinkHandler(LineSink(stream=io.StringIO())),
    "JSONFormatter": JSONFormatter,
    "HostedLoop": _loop,
    "LifespanFailure": lambda: LifespanFailure("x"),
    "PushMistake": lambda: PushMistake("x"),
    "SendTimeout": SendTimeout,
    "StreamGone": StreamGone,
    "HeaderError": lambda: HeaderError("x"),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_freed_object_runs_its_weak_reference_callbacks(name: str) -> None:
    called: list[str] = []
    thing = MAKERS[name]()
    ref = weakref.ref(thing, lambda _: called.append(name))
    del thing
    gc.collect()
    assert ref() is None
    assert called == [name]


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_weak_set_forgets_a_freed_object(name: str) -> None:
    """The case that crashed: logging keeps its handlers in a WeakSet, which relies on those callbacks."""
    thing = MAKERS[name]()
    weak = weakref.WeakSet([thing])
    del thing
    gc.collect()
    assert len(weak) == 0
