"""The cyclic garbage collector, set for a server's allocation pattern before it starts serving.

Why: with CPython's default thresholds (700, 10, 10) a server under load runs a
young collection every few requests. The objects of the hundred or so requests
in flight survive each one, so they are promoted, and the long-lived count they
leave behind triggers full collections that walk every module, function and
class the app imported. Measured on the tiny ASGI app under ``h2load -c 10 -m
10`` (bench/README.md, "Where the time goes"), that was 10-15% of the worker's
CPU even with no cyclic garbage to find. Two changes take it to well under 1%:

* :func:`gc.freeze` once the app is imported and the server is built: what
  exists then lives for the whole process, so full collections skip it;
* a young-generation threshold of :data:`GEN0_THRESHOLD` instead of 700, so the
  requests in flight no longer trip collections by merely existing.

A request leaves no cyclic garbage of its own (reference counting frees it;
``tests/asgi/test_gc.py`` holds that), so the higher threshold costs little
memory. An app that set its own thresholds at import keeps them.
"""

from __future__ import annotations

import gc

#: CPython's defaults: only these are replaced (an app that chose its own keeps them).
DEFAULT_THRESHOLDS = (700, 10, 10)
GEN0_THRESHOLD = 10_000


def tune() -> None:
    """Freeze what exists now and raise the young generation's threshold (see the module docstring)."""
    gc.collect()  # whatever import left as garbage is freed, not frozen
    gc.freeze()
    if gc.get_threshold() == DEFAULT_THRESHOLDS:
        gc.set_threshold(GEN0_THRESHOLD, *DEFAULT_THRESHOLDS[1:])
