"""h2gate.ops.gctune: the collector is set up once before serving; an app's own thresholds win."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from h2gate.ops import gctune


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_defaults_are_raised_and_startup_objects_frozen(restore_gc: None) -> None:
    gc.set_threshold(*gctune.DEFAULT_THRESHOLDS)
    gctune.tune()
    assert gc.get_threshold() == (gctune.GEN0_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0


def test_an_apps_own_thresholds_are_kept(restore_gc: None) -> None:
    gc.set_threshold(1234, 5, 6)
    gctune.tune()
    assert gc.get_threshold() == (1234, 5, 6)
