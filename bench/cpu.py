"""Server CPU time per request: the figure to compare changes by on a shared, noisy machine.

Run from anywhere:  python bench/cpu.py [--servers h2gate-asyncio,h2gate-trio] [--rounds 3]

req/s on a two-core box swings with whatever else runs; the CPU a server
spends per request (user + system time of its whole process tree, from
``/proc``, across one bounded ``h2load`` run after a warm-up) moves far
less. Each round starts every server afresh, in turn, so drifts in the
machine hit all of them alike; the median of the rounds is printed.
``--path /download`` measures the bulk path instead (CPU per 5 MiB body).
Figures are printed, never checked. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import SPECS
from bench.scenarios import available, in_workdir, running
from bench.servers import HOST, run_h2load

_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        todo.extend(int(c) for c in children)
    return total


def measure(name: str, args: argparse.Namespace, workdir: Path) -> float | str:
    """Microseconds of server CPU per request for one fresh start of ``name``, or why there is none."""
    with running(SPECS[name], workdir, args.startup_timeout) as server:
        if isinstance(server, str):
            return server
        url = f"https://{HOST}:{server.port}{args.path}"
        warm = run_h2load(url, args.warmup, args.clients, args.streams, args.duration)
        if not warm.ok:
            return f"warm-up failed: {warm.error}"
        before = tree_cpu_seconds(server.proc.pid)
        res = run_h2load(url, args.requests, args.clients, args.streams, args.duration)
        spent = tree_cpu_seconds(server.proc.pid) - before
        if not res.ok or res.failures:
            return f"run failed: {res.error or f'{res.failures} failures'}"
        return spent * 1e6 / args.requests


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="h2gate-asyncio,h2gate-trio,h2gate-wsgi", help="names from bench/run.py")
    p.add_argument("--rounds", type=int, default=3, help="fresh starts per server (median printed)")
    p.add_argument("--requests", "-n", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--clients", "-c", type=int, default=10)
    p.add_argument("--streams", "-m", type=int, default=10)
    p.add_argument("--path", default="/", help="'/' (13 bytes) or '/download' (5 MiB)")
    p.add_argument("--duration", type=float, default=120.0, help="time bound of each h2load run, seconds")
    p.add_argument("--startup-timeout", type=float, default=15.0)
    args = p.parse_args(argv)
    unknown = [s for s in args.servers.split(",") if s not in SPECS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.servers.split(",") if available(SPECS[n])]
    unit = "request" if args.path == "/" else f"{args.path} body"

    def body(workdir: Path) -> None:
        samples: dict[str, list[float]] = {n: [] for n in names}
        print(f"server CPU per {unit}: h2load -c {args.clients} -m {args.streams} -n {args.requests} {args.path}")
        print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, {args.rounds} round(s)")
        for round_no in range(1, args.rounds + 1):
            for name in names if round_no % 2 else names[::-1]:  # A B, B A: drift hits both alike
                got = measure(name, args, workdir)
                if isinstance(got, str):
                    print(f"  round {round_no} {name:<18} no figure: {got.splitlines()[0]}")
                    continue
                samples[name].append(got)
                print(f"  round {round_no} {name:<18} {got:8.1f} us")
        print("median:")
        for name, values in samples.items():
            if values:
                spread = f"(min {min(values):.1f}, max {max(values):.1f})"
                print(f"  {name:<18} {statistics.median(values):8.1f} us per {unit}  {spread}")

    return in_workdir("h2gate-cpu-", body)


if __name__ == "__main__":
    sys.exit(main())
