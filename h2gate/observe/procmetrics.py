"""Metrics about the processes rather than the traffic: build info, ``process_*`` per worker, the supervisor's counts.

Theory of operation: prometheus_client's multiprocess mode sums what workers
write to their files but has no ``process_*`` metrics (each process can only
describe itself). The supervisor knows its workers' PIDs, so
:class:`SupervisorCollector` reads each one's ``/proc`` entry with
prometheus_client's own :class:`~prometheus_client.ProcessCollector` at
scrape time and labels the samples ``worker="<slot>"`` (``"supervisor"`` for
itself). Counts that only the supervisor sees (reloads, restarts, the number
of workers) live in its memory and are served beside the workers' sums.
"""

from __future__ import annotations

import platform
import ssl
import threading
from collections.abc import Iterator
from importlib import metadata
from typing import Any


def build_labels() -> dict[str, str]:
    """What this h2gate was built from: its version and its engines' (``h2gate_build_info``)."""
    from h2gate import __version__

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    try:
        from OpenSSL import SSL

        openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")
    except Exception:  # only a label
        openssl = ssl.OPENSSL_VERSION
    return {
        "version": __version__,
        "python": platform.python_version(),
        "h2": version("h2"),
        "trio": version("trio"),
        "pyopenssl": version("pyOpenSSL"),
        "openssl": openssl,
    }


def build_info_family() -> Any:
    from prometheus_client.core import GaugeMetricFamily

    labels = build_labels()
    family = GaugeMetricFamily("h2gate_build_info", "The h2gate build serving: always 1.", labels=list(labels))
    family.add_metric(list(labels.values()), 1.0)
    return family


class BuildInfoCollector:
    """``h2gate_build_info`` for a single process's registry."""

    def collect(self) -> Iterator[Any]:
        yield build_info_family()


def labelled_process_families(pids: dict[str, int | str]) -> list[Any]:
    """``process_*`` families with one sample per process, labelled ``worker`` (a key of ``pids``)."""
    from prometheus_client import ProcessCollector
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    merged: dict[str, Any] = {}
    for worker, pid in pids.items():
        collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
        for family in collector.collect():
            out = merged.get(family.name)
            if out is None:
                kind = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                out = merged[family.name] = kind(family.name, family.documentation, labels=["worker"])
            for sample in family.samples:
                out.add_metric([worker], sample.value)
    return list(merged.values())


class SupervisorCollector:
    """What the supervisor serves beside the workers' sums; updated by its hooks, read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the endpoint's threads read while the supervisor's loop writes
        self.workers: dict[int, int] = {}  # pid -> slot, live workers
        self.target = 0
        self.restarts = 0
        self.reloads = {"ok": 0, "failed": 0}

    def worker_started(self, pid: int, slot: int) -> None:
        with self._lock:
            self.workers[pid] = slot

    def worker_exited(self, pid: int, restarting: bool) -> None:
        with self._lock:
            self.workers.pop(pid, None)
            self.restarts += restarting

    def count_restart(self) -> None:
        with self._lock:
            self.restarts += 1

    def reloaded(self, ok: bool) -> None:
        with self._lock:
            self.reloads["ok" if ok else "failed"] += 1

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            workers = dict(self.workers)
            restarts, reloads, target = self.restarts, dict(self.reloads), self.target
        yield CounterMetricFamily("h2gate_worker_restarts", "Workers restarted after dying.", value=restarts)
        family = CounterMetricFamily("h2gate_reloads", "Reloads (SIGHUP, --reload) by result.", labels=["result"])
        for result, count in reloads.items():
            family.add_metric([result], count)
        yield family
        yield GaugeMetricFamily("h2gate_workers", "Worker slots (--workers, SIGTTIN, SIGTTOU).", value=target)
        yield build_info_family()
        pids: dict[str, int | str] = {"supervisor": "self"}
        for pid, slot in sorted(workers.items(), key=lambda item: item[1]):
            # Two processes share a slot while one replaces the other: one of them is shown.
            pids[str(slot)] = pid
        yield from labelled_process_families(pids)
