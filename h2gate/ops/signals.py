"""What each signal means to h2gate's processes: one place for the constants both sides share."""

from __future__ import annotations

#: Seconds a second SIGINT waits for cancelled work before the process exits regardless.
FORCED_EXIT_DELAY = 2.0
