"""Unit tests of the per-connection accounting (h2gate.protocol.limits) and deadlines (h2gate.protocol.timeouts)."""

from __future__ import annotations

import math

from h2gate.protocol.limits import BodyLengths, BodySizes, EarnedBudget, RateBudget, ResetBudget, Throttle
from h2gate.protocol.timeouts import Deadlines


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


def test_deadlines_come_out_in_order_and_honour_changes() -> None:
    table = Deadlines()
    woken: list[float] = []
    table.moved_earlier.then(lambda: woken.append(table.earliest))
    table.arm("late", 5.0)
    table.arm("gone", 1.0)
    table.arm(7, 3.0)
    assert table.earliest == 1.0
    table.disarm("gone")
    table.arm(7, 4.0)  # pushed back: due at 4, not 3
    assert table.expired(1.5) == [] and table.earliest == 4.0  # a wake at the stale time finds nothing
    table.moved_earlier.then(lambda: woken.append(table.earliest))
    table.arm("early", 2.0)  # earlier than anything left: the driver's sleep is cut short
    assert table.armed("early") and not table.armed("gone")
    assert woken == [5.0, 2.0]
    assert table.expired(4.0) == ["early", 7]
    assert table.expired(10.0) == ["late"]
    assert table.earliest == math.inf


def test_earned_budget_widens_with_the_traffic_it_answers() -> None:
    budget = EarnedBudget(per_second=10)
    assert not any(budget.spend(0.0) for _ in range(10))
    assert budget.spend(0.1)  # the eleventh, with nothing earned
    budget = EarnedBudget(per_second=10)
    budget.earn(0.0, 100)  # e.g. 50 DATA frames sent, two WINDOW_UPDATEs each allowed
    assert not budget.spend(0.2, 105)
    assert budget.spend(0.3, 10)  # 115 > 10 + 100
    assert not budget.spend(2.0, 5)  # a second later both the spending and the credit have aged out


def test_budgets_forget_what_aged_out_when_trimmed() -> None:
    budget = EarnedBudget(per_second=10)
    assert not budget.holding
    for n in range(80):  # a download's worth of DATA, then the connection goes idle
        budget.earn(n / 100, 2)
    budget.spend(0.5, 3)
    assert budget.holding
    budget.trim(1.2)  # only what is over a second old goes
    assert budget.holding
    budget.trim(2.0)
    assert not budget.holding
    assert not budget.spend(2.1, 10) and budget.spend(2.2, 1)  # nothing earned is left: the bare budget


def test_earned_credit_is_bounded_without_any_spending() -> None:
    budget = EarnedBudget(per_second=10)
    for n in range(10_000):  # many small responses, and a client that never sends WINDOW_UPDATE
        budget.earn(n * 0.01, 2)
    assert len(budget._earned._items) - budget._earned._head <= 101
