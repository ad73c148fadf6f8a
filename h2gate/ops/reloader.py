"""``--reload``: watch the source tree and tell the supervisor when it changed.

The watching (``watchfiles``, inotify on Linux) runs in one daemon thread
that collects changed paths and wakes the supervisor's loop; the supervisor
then reloads the same way as on SIGHUP: a new worker imports the new code
and takes over once ready. If the new code does not import, the worker's
traceback is in the log, the old worker (if any) keeps serving, and the
next change tries again: the reloader never exits because of the app.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from h2gate.config import Config
from h2gate.errors import StartupError

log = logging.getLogger("h2gate.error")


def path_filter(include: list[str], exclude: list[str], roots: list[str]) -> Callable[[Any, str], bool]:
    """A watchfiles filter: the file name matches an include pattern and no part of its path below a
    watched directory matches an exclude pattern."""

    def accept(change: Any, path: str) -> bool:
        relative = path
        for root in roots:
            if path.startswith(root + os.sep):
                relative = path[len(root) + 1 :]
                break
        parts = PurePath(relative).parts
        if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in exclude):
            return False
        return any(fnmatch.fnmatch(parts[-1], pattern) for pattern in include) if parts else False

    return accept


class FileWatcher:
    """Collects changed paths in a background thread; :meth:`take` hands them over."""

    def __init__(self, dirs: list[str], include: list[str], exclude: list[str]) -> None:
        self.dirs = [os.path.abspath(d) for d in dirs]
        for d in self.dirs:
            if not os.path.isdir(d):
                raise StartupError(f"--reload-dir {d}: not a directory")
        self.filter = path_filter(include, exclude, self.dirs)
        self._changes: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config) -> FileWatcher:
        """Raises StartupError (also when watchfiles is not installed)."""
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise StartupError("--reload needs the watchfiles package: pip install 'h2gate[reload]'") from None
        return cls(config.reload_dir or [config.app_dir], config.reload_include, config.reload_exclude)

    def start(self, wake: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=self._watch, args=(wake,), name="h2gate-reload", daemon=True)
        self._thread.start()
        log.info("--reload: watching %s", ", ".join(self.dirs))

    def _watch(self, wake: Callable[[], None]) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *self.dirs, watch_filter=self.filter, stop_event=self._stop, raise_interrupt=False
            ):
                with self._lock:
                    for _, path in sorted(changes, key=lambda c: c[1]):
                        shown = self._relative(path)
                        if shown not in self._changes and len(self._changes) < 1000:
                            self._changes.append(shown)
                wake()
        except Exception:
            log.exception("--reload: the file watcher failed; changes are no longer seen")

    def _relative(self, path: str) -> str:
        """The path below the watched directory it is in (what a log reader recognises)."""
        for root in self.dirs:
            if path.startswith(root + os.sep):
                return path[len(root) + 1 :]
        return path

    def take(self) -> list[str]:
        with self._lock:
            changes, self._changes = self._changes, []
        return changes

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
