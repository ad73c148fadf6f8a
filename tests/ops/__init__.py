"""Tests of h2gate.ops: processes, workers, signals, reload, shutdown, systemd, admission, the startup block."""
