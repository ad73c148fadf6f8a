"""Unit tests of the per-connection accounting (h2gate.protocol.limits) and deadlines (h2gate.protocol.timeouts)."""

from __future__ import annotations

import trio
import trio.testing

from h2gate.protocol.limits import BodyLengths, BodySizes, RateBudget, ResetBudget, Throttle
from h2gate.protocol.timeouts import Watchdog


def test_reset_budget_counts_one_second_window() -> None:
    budget = ResetBudget(per_second=3)
    assert not any(budget.spend(t) for t in (0.0, 0.1, 0.2))
    assert budget.spend(0.3)  # the fourth within a second
    assert not budget.spend(1.25)  # the first three have aged out
    assert not budget.spend(1.26)


def test_body_lengths_catches_long_and_short_bodies() -> None:
    lengths = BodyLengths()
    lengths.expect(1, [(b"content-type", b"x"), (b"content-length", b"10")])
    assert lengths.data(1, 6) is None
    assert lengths.data(1, 5) == "more DATA than content-length"
    assert lengths.end(1) is None  # already reported and forgotten

    lengths.expect(3, [(b"content-length", b"10")])
    assert lengths.data(3, 4) is None
    assert lengths.end(3) == "less DATA than content-length"

    lengths.expect(5, [(b"content-length", b"4")])
    assert lengths.data(5, 4) is None and lengths.end(5) is None

    lengths.expect(7, [])  # no content-length: nothing to compare
    assert lengths.data(7, 1_000) is None and lengths.end(7) is None

    lengths.expect(9, [(b"content-length", b"3")])
    lengths.forget(9)
    assert lengths.end(9) is None


def test_rate_budget_counts_batches() -> None:
    budget = RateBudget(per_second=100)
    assert not budget.spend(0.0, 60)
    assert not budget.spend(0.5, 40)  # exactly the budget
    assert budget.spend(0.9, 1)
    assert not budget.spend(1.6, 50)  # the batches of 0.0 and 0.5 have aged out: 51 left
    assert budget.spend(1.7, 50)


def test_body_sizes_reports_once_and_only_with_a_limit() -> None:
    sizes = BodySizes(limit=10)
    assert sizes.too_large(11) and not sizes.too_large(10) and not sizes.too_large(None)
    assert not sizes.add(1, 6)
    assert not sizes.add(1, 4)  # exactly the limit
    assert sizes.add(1, 1)
    assert not sizes.add(1, 100)  # already reported (the stream was reset)
    sizes.forget(1)
    assert not sizes.add(1, 10)
    unlimited = BodySizes(limit=0)
    assert not unlimited.too_large(2**40) and not unlimited.add(1, 2**40)


def test_throttle_collapses_bursts() -> None:
    throttle = Throttle(interval=1.0)
    assert throttle.note(0.0) == 1  # the first is reported at once
    assert [throttle.note(t) for t in (0.1, 0.2, 0.3)] == [0, 0, 0]
    assert throttle.note(1.05) == 4  # the three held back plus this one
    assert throttle.note(1.5) == 0


def test_watchdog_fires_in_deadline_order_and_honours_changes() -> None:
    fired: list[tuple[object, float]] = []

    async def main() -> None:
        dog = Watchdog()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dog.run, lambda key: fired.append((key, trio.current_time() - start)))
            dog.arm("late", start + 5)
            dog.arm("gone", start + 1)
            dog.arm(7, start + 3)
            await trio.sleep(0.5)
            dog.disarm("gone")
            dog.arm(7, start + 4)  # pushed back: fires at 4, not 3
            dog.arm("early", start + 2)  # earlier than anything: wakes the watchdog
            assert dog.armed("early") and not dog.armed("gone")
            await trio.sleep(10)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == [("early", 2.0), (7, 4.0), ("late", 5.0)]
