"""The listening sockets of each worker slot: one SO_REUSEPORT socket per slot where the platform has it.

Theory of operation
-------------------
With one listening socket shared by every worker, the kernel wakes whichever
worker waits first, and long-lived HTTP/2 connections pile up on one of them.
With SO_REUSEPORT each worker slot gets a socket of its own on the same
address, and the kernel spreads new connections over those sockets evenly
(by a hash of the addresses and ports).

The supervisor *reserves* each TCP address with a socket that is bound but
does not listen (so it takes no connections itself) and adds one listening
twin per slot (:func:`h2gate.net.binds.open_reuse_port_twin`). A slot's
sockets belong to the slot, not to a process: the workers that follow each
other in it (a reload, --max-requests, an operator's SIGTERM) accept from the
same socket, so its queue of not yet accepted connections is never lost. They
are closed when the slot empties: SIGTTOU retires it, or its worker died and
its restart waits (connections queued there then get a reset instead of
waiting out the back-off; new ones go to the other slots). Closing a socket
whose queue still holds connections resets them: the kernel cannot move them.

Unix sockets, ``fd://`` binds and systemd's sockets are shared by every slot,
as without SO_REUSEPORT: they were made elsewhere (or cannot have twins), and
the address they hold stays theirs.
"""

from __future__ import annotations

import logging
import socket

from h2gate.errors import StartupError
from h2gate.net.binds import Bind, open_reuse_port_twin

log = logging.getLogger("h2gate.error")


class SlotSockets:
    """Which sockets the worker in each slot accepts on."""

    def __init__(self, opened: list[tuple[Bind, socket.socket]], backlog: int, *, reserved: bool) -> None:
        """``opened`` as from :func:`h2gate.net.binds.open_sockets`; ``reserved``: its TCP binds do not listen."""
        self.opened = opened
        self.backlog = backlog
        self._twinned = [reserved and bind.kind == "tcp" for bind, _ in opened]
        self._slots: dict[int, list[socket.socket]] = {}

    @property
    def sockets(self) -> list[socket.socket]:
        """One socket per bind, for the startup block's addresses."""
        return [sock for _, sock in self.opened]

    @property
    def spread(self) -> bool:
        """Whether any bind has a socket per slot."""
        return any(self._twinned)

    def fds(self, slot: int) -> list[int]:
        """The descriptors the worker in ``slot`` inherits, opening the slot's twins if needed. Raises OSError."""
        twins = self._slots.get(slot)
        if twins is None:
            twins = []
            try:
                for (_, sock), twinned in zip(self.opened, self._twinned, strict=True):
                    if twinned:
                        twins.append(open_reuse_port_twin(sock, self.backlog))
            except BaseException:
                for twin in twins:
                    twin.close()
                raise
            self._slots[slot] = twins
        it = iter(twins)
        pairs = zip(self.opened, self._twinned, strict=True)
        return [next(it).fileno() if twinned else sock.fileno() for (_, sock), twinned in pairs]

    def open_slots(self, count: int) -> None:
        """Open the first ``count`` slots' sockets now, so a failure is a startup error. Raises StartupError."""
        try:
            for slot in range(count):
                self.fds(slot)
        except OSError as exc:
            raise StartupError(f"cannot open a SO_REUSEPORT socket per worker: {exc.strerror or exc}") from None

    def release(self, slot: int) -> None:
        """Close the slot's own sockets (its worker is gone and none follows at once)."""
        for twin in self._slots.pop(slot, []):
            twin.close()

    def close(self) -> None:
        for slot in list(self._slots):
            self.release(slot)
