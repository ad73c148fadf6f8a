"""The run's one timer task (h2gate.protocol.timers): each connection woken at its time, closed ones forgotten."""

from __future__ import annotations

import trio
import trio.testing

from h2gate.protocol.timers import Timers, timers


def test_each_handle_is_woken_at_its_earliest_time_only() -> None:
    woken: list[tuple[str, float]] = []

    async def main() -> None:
        service = timers()
        assert timers() is service  # one per run
        start = trio.current_time()
        a = service.handle(lambda: woken.append(("a", trio.current_time() - start)))
        b = service.handle(lambda: woken.append(("b", trio.current_time() - start)))
        gone = service.handle(lambda: woken.append(("gone", trio.current_time() - start)))
        a.at(start + 5)
        a.at(start + 2)  # earlier: the entry at 5 is stale now
        a.at(start + 9)  # later than what it has: nothing changes
        b.at(start + 3)
        gone.at(start + 1)
        gone.close()
        await trio.sleep(10)
        assert service.stale == 0  # the stale entries came up and were dropped

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(name, round(t, 3)) for name, t in woken] == [("a", 2.0), ("b", 3.0)]


def test_stale_entries_are_compacted_away() -> None:
    async def main() -> None:
        service = Timers()  # not started: only the heap is looked at
        now = trio.current_time()
        handles = [service.handle(lambda: None) for _ in range(500)]
        for h in handles:
            h.at(now + 300)
        for h in handles[:400]:  # 400 connections end long before their keep-alive
            h.close()
        service.handle(lambda: None).at(now + 1)  # the next push compacts
        assert len(service._heap) == 101 and service.stale == 0

    trio.run(main)
