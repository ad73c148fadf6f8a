"""Unit tests of the per-connection accounting in h2gate.limits."""

from __future__ import annotations

from h2gate.limits import BodyLengths, ResetBudget


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
