"""Soak run: one real h2gate server under mixed, partly misbehaving traffic for N minutes; does its memory plateau?

Run from anywhere:  python bench/soak.py [--minutes 2] [--app asgi|wsgi] [--loop trio|asyncio]

The server (TLS on a free 127.0.0.1 port, a bundled test app: tests/apps/flow.py
for ASGI, tests/apps/wsgi_apps.py for WSGI) runs with short --send-timeout and
--body-timeout so the slow clients are reaped within the run. The clients
(bench/soak_traffic.py) run in threads: h2load bursts, httpx HTTP/2 sessions
with uploads and downloads, streams reset mid-response, zero-window readers,
a reader that stops reading its socket, a stalled upload and connection churn.
Every --interval seconds the server's RSS (VmRSS), open fds, threads and
established connections are sampled and printed. At the end the verdict
compares the mean RSS of the last third of the samples with the middle third
(the first third is warm-up). Exit status: 0 plateau; 1 growth, the server
died, or its log has an ERROR/CRITICAL line or a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import HOST, ROOT, ServerProcess, ServerSpec, free_port, interrupt_on_sigterm, make_cert, wait_ready
from bench.soak_traffic import CLIENTS, ROUTES, Ctx, run_worker

MAX_SECONDS = 60 * 60  # --minutes is capped at 60
SEND_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
APPS = {"asgi": "apps.flow:app", "wsgi": "apps.wsgi_apps:raw"}
BAD_LINE = re.compile(r"\[(ERROR|CRITICAL)\]|Traceback")


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    plateau: bool
    middle_mib: float  # mean RSS of the middle third of the samples
    last_mib: float  # mean RSS of the last third
    allowed_mib: float  # growth tolerated between the two

    @property
    def growth_mib(self) -> float:
        return self.last_mib - self.middle_mib

    def __str__(self) -> str:
        word = "PLATEAU" if self.plateau else "GROWTH"
        return (
            f"{word}: mean RSS {self.middle_mib:.1f} MiB in the middle third, {self.last_mib:.1f} MiB in the last "
            f"third: {self.growth_mib:+.1f} MiB (allowed +{self.allowed_mib:.1f} MiB)"
        )


def judge(rss_kib: Sequence[int], tolerance_mib: float = 4.0, tolerance_ratio: float = 0.05) -> Verdict:
    """Plateau when the last third's mean RSS exceeds the middle third's by at most the tolerance.

    The first third is warm-up (imports, caches, pools filling) and is ignored; the
    tolerance is ``tolerance_mib`` or ``tolerance_ratio`` of the middle mean, whichever is larger.
    """
    if len(rss_kib) < 3:
        raise ValueError(f"need at least 3 samples to judge, got {len(rss_kib)}")
    third = len(rss_kib) // 3
    middle = rss_kib[third : 2 * third]
    last = rss_kib[len(rss_kib) - third :]
    middle_mib = sum(middle) / len(middle) / 1024
    last_mib = sum(last) / len(last) / 1024
    allowed = max(tolerance_mib, tolerance_ratio * middle_mib)
    return Verdict(last_mib - middle_mib <= allowed, middle_mib, last_mib, allowed)


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_kib: int
    fds: int
    threads: int
    connections: int


def server_connections(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (the server's side), from /proc/net/tcp."""
    suffix = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if fields[1].endswith(suffix) and fields[3] == "01":
                        count += 1
        except OSError:
            continue
    return count


def sample(pid: int, port: int, started: float) -> Sample:
    status: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            status[name] = value.strip()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(
        time.monotonic() - started,
        int(status["VmRSS"].split()[0]),
        fds,
        int(status["Threads"]),
        server_connections(port),
    )


def print_row(s: Sample, served: int, note: str = "") -> None:
    row = f"{s.seconds:7.0f}  {s.rss_kib / 1024:8.1f}  {s.fds:5d}  {s.threads:7d}  {s.connections:5d}  {served:9d}"
    print(f"{row}  {note}".rstrip(), flush=True)


# --------------------------------------------------------------------------- the run


def server_argv(args: argparse.Namespace) -> ServerSpec:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        loop = ["--loop", args.loop] if args.app == "asgi" else []
        return [
            sys.executable, "-m", "h2gate", APPS[args.app], "--app-dir", str(ROOT / "tests"),
            "-b", f"{HOST}:{port}", "--certfile", str(cert), "--keyfile", str(key), *loop,
            "--no-access-log", "--log-level", "warning",
            "--send-timeout", str(SEND_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
        ]  # fmt: skip

    return ServerSpec(f"h2gate-{args.app}", argv, "h2gate")


def served_count(ctx: Ctx) -> int:
    """Exchanges the clients completed as expected so far."""
    with ctx.lock:
        return sum(n for key, n in ctx.stats.items() if " ok" in key or "GOAWAY" in key or "served" in key)


def soak(args: argparse.Namespace, workdir: Path) -> int:
    cert, key = make_cert(workdir)
    port = free_port()
    server = ServerProcess(server_argv(args), port, cert, key, workdir / "server.log")
    threads: list[threading.Thread] = []
    ctx = Ctx(port, str(workdir / "ca.pem"), ROUTES[args.app], SEND_TIMEOUT, BODY_TIMEOUT, threading.Event())
    samples: list[Sample] = []
    try:
        routes = ctx.routes
        if err := wait_ready(server, 20.0, routes.small, (200, routes.small_body)):
            print(f"server did not start: {err}\n{server.log_tail()}", file=sys.stderr)
            return 1
        kinds = [k for k in CLIENTS if k != "h2load" or shutil.which("h2load")]
        if "h2load" not in kinds:
            print("h2load not found on PATH: no h2load bursts (install nghttp2-client)")
        print(f"serving {APPS[args.app]} on https://{HOST}:{port} (pid {server.proc.pid}); clients: " + ", ".join(
            f"{kind} x{CLIENTS[kind][1]}" for kind in kinds))  # fmt: skip
        print(f"\n{'seconds':>7}  {'RSS MiB':>8}  {'fds':>5}  {'threads':>7}  {'conns':>5}  {'served':>9}")
        started = time.monotonic()
        for kind in kinds:
            for i in range(CLIENTS[kind][1]):
                t = threading.Thread(target=run_worker, args=(kind, ctx), name=f"{kind}-{i}", daemon=True)
                t.start()
                threads.append(t)
        end = started + args.seconds
        next_at = started
        while (now := time.monotonic()) < end + args.interval / 2 and server.proc.poll() is None:
            if now >= next_at:
                try:
                    samples.append(sample(server.proc.pid, port, started))
                except (OSError, KeyError, ValueError):  # the process went away between poll() and /proc
                    break
                print_row(samples[-1], served_count(ctx))
                next_at += args.interval
            time.sleep(min(0.2, max(0.0, next_at - time.monotonic())))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        ctx.stop.set()
        join_by = time.monotonic() + 30  # every client round is bounded; this bounds the wait for all of them
        for t in threads:
            t.join(timeout=max(0.1, join_by - time.monotonic()))
        alive = server.proc.poll() is None
        if alive and samples:
            time.sleep(1.0)
            print_row(sample(server.proc.pid, port, started), served_count(ctx), "(clients stopped; not judged)")
        server.stop()
    return report(args, ctx, samples, alive, server.log_path)


def _shape(line: str) -> str:
    """A log line without its timestamp, with addresses and numbers made alike, to count lines by kind."""
    return re.sub(r"\d+", "N", line.split("] ", 1)[-1])


def report(args: argparse.Namespace, ctx: Ctx, samples: list[Sample], alive: bool, log_path: Path) -> int:
    print("\nclient outcomes:")
    for outcome, n in sorted(ctx.stats.items()):
        print(f"  {n:8d}  {outcome}")
    log = log_path.read_text(errors="replace").splitlines()
    bad = [line for line in log if BAD_LINE.search(line)]
    warnings = Counter(_shape(line) for line in log if "[WARNING]" in line)
    print(f"server log: {len(log)} lines, {warnings.total()} at WARNING, {len(bad)} ERROR/CRITICAL/traceback")
    for shape, n in warnings.most_common(10):
        print(f"  {n:8d}  {shape}")
    failed = False
    if not alive:
        print(f"FAIL: the server died\n{chr(10).join(log[-20:])}")
        failed = True
    if bad:
        print("FAIL: the server logged errors:\n  " + "\n  ".join(bad[:20]))
        failed = True
    if served_count(ctx) == 0:
        print("FAIL: no request was served")
        failed = True
    anomalies = sum(n for key, n in ctx.stats.items() if "ANOMALY" in key)
    if anomalies:
        print(f"note: {anomalies} misbehaving client(s) were not reaped in time (see ANOMALY above)")
    if len(samples) >= 3:
        verdict = judge([s.rss_kib for s in samples], args.tolerance_mib)
        print(f"verdict: {verdict}")
        failed = failed or not verdict.plateau
    else:
        print(f"FAIL: only {len(samples)} RSS samples; need 3 to judge")
        failed = True
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="how long to run (default 2, at most 60)")
    p.add_argument("--seconds", type=float, default=None, help="how long to run, in seconds (overrides --minutes)")
    p.add_argument("--app", choices=sorted(APPS), default="asgi", help="ASGI (tests/apps/flow.py) or WSGI app")
    p.add_argument("--loop", choices=("trio", "asyncio"), default="trio", help="ASGI event loop (default trio)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--tolerance-mib", type=float, default=4.0, help="RSS growth still called a plateau (default 4)")
    args = p.parse_args(argv)
    args.seconds = args.minutes * 60 if args.seconds is None else args.seconds
    if not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"the run must last between 0 and {MAX_SECONDS} seconds")
    if args.interval <= 0 or args.seconds / args.interval < 3:
        p.error("--interval must be positive and fit at least 3 samples into the run")
    if args.app == "wsgi" and args.loop != "trio":
        p.error("--loop applies to --app asgi only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    loop = f", --loop {args.loop}" if args.app == "asgi" else ""
    print(
        f"soak: {args.app}{loop} for {args.seconds:.0f}s, sample every {args.interval:g}s, "
        f"--send-timeout {SEND_TIMEOUT:g} --body-timeout {BODY_TIMEOUT:g}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="h2gate-soak-") as tmp:
        return soak(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
