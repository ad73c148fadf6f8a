"""HTTP/2-over-TLS load comparison: h2gate against the field (bench/peers.py), ASGI and WSGI.

Run from anywhere:  python bench/run.py [--quick] [--requests N] [--servers a,b,...]

For each server in turn this script starts it on a free 127.0.0.1 port (one
worker process, same ASGI app: bench/app.py; the ``*-wsgi`` servers serve the
same routes from the WSGI app bench/wsgi_app.py; command lines in bench/peers.py;
a server that cannot run here is skipped with the reason), waits until it answers a real
HTTP/2 request, drives it with h2load (a small-response run and a 5 MiB
download run), samples its resident memory while h2load runs, stops it, and
finally prints one table side by side.  It also times the ``h2`` state machine
alone in-process (the "h2 floor", bench/floor.py): no server running h2 as it
comes can beat that figure on one core.  With ``--rounds N`` the whole
sequence (floor included) runs N times, the servers taking turns, and the
table shows each server's median run: the machine's speed drifts more between
minutes than many differences between servers, and taking turns spreads that
drift over all of them.

The figures are printed, never checked: this is a measuring tool, not a test.
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import codec_floor, h2_floor, print_codec_floor, print_floor
from bench.peers import (
    ALL_SERVERS,
    APP,
    BASELINE,
    OPTIONAL,
    SPECS,
    WSGI_BASELINE,
    installed_h2gate,
    is_wsgi,
    served_build,
)
from bench.servers import (
    HOST,
    LoadResult,
    RssSampler,
    ServerProcess,
    ServerSpec,
    free_port,
    h2load_version,
    interrupt_on_sigterm,
    make_cert,
    run_h2load,
    wait_ready,
)

__all__ = ["APP", "SPECS", "main"]  # APP and SPECS: imported from here by older scripts

# --------------------------------------------------------------------------- per-server run


@dataclass
class ServerResult:
    name: str
    version: str = ""
    skipped: str = ""
    hello: LoadResult = field(default_factory=LoadResult)
    download: LoadResult = field(default_factory=LoadResult)
    rss_idle: int = 0
    rss_peak: int = 0
    procs: int = 0

    @property
    def failures(self) -> int:
        return self.hello.failures + self.download.failures


def bench_server(spec: ServerSpec, args: argparse.Namespace, cert: Path, key: Path, workdir: Path) -> ServerResult:
    result = ServerResult(spec.name, version=spec.version())
    if why := spec.unavailable():
        result.skipped = why
        return result
    port = free_port()
    server = ServerProcess(spec, port, cert, key, workdir / f"{spec.name}.log")
    try:
        err = wait_ready(server, args.startup_timeout)
        if err:
            result.skipped = err
            tail = server.log_tail()
            print(f"  {spec.name}: {err}" + ("\n    log: " + tail.replace("\n", "\n    log: ") if tail else ""))
            return result
        if spec.describe is not None:  # an installed h2gate (--h2gate-python): say which one this server runs
            print(f"  {spec.name}: {served_build(server.proc.pid, server.log_tail(40))}", flush=True)
        sampler = RssSampler(server.proc.pid)
        result.rss_idle = sampler.sample()
        base = f"https://{HOST}:{port}"
        if args.warmup:
            run_h2load(f"{base}/", args.warmup, args.clients, args.streams, args.duration)
        with sampler.running():
            result.hello = run_h2load(f"{base}/", args.requests, args.clients, args.streams, args.duration)
        print(f"  {spec.name}: {describe_run(result.hello, 'req/s')}", flush=True)
        with sampler.running():
            result.download = run_h2load(f"{base}/download", args.downloads, 1, 1, args.duration)
        print(f"  {spec.name}: download {describe_run(result.download, 'MB/s')}", flush=True)
        result.rss_peak, result.procs = sampler.peak, sampler.max_procs
        if server.proc.poll() is not None:
            result.skipped = f"server exited during the run (code {server.proc.returncode})"
    finally:
        server.stop()
    return result


def describe_run(res: LoadResult, unit: str) -> str:
    if not res.ok:
        return f"FAILED ({res.error})"
    figure = res.req_per_s if unit == "req/s" else res.body_mb_per_s
    note = f", {res.error}" if res.error else ""
    return f"{figure:,.1f} {unit} over {res.total} requests in {res.seconds:.2f}s, {res.failures} failed{note}"


def median_run(runs: list[ServerResult]) -> ServerResult:
    """The run with the median small-request req/s (the lower middle of an even count), else the last one."""
    ok = sorted((r for r in runs if r.hello.ok), key=lambda r: r.hello.req_per_s)
    return ok[(len(ok) - 1) // 2] if ok else runs[-1]


def print_rounds(runs: dict[str, list[ServerResult]]) -> None:
    print("req/s per round (the table shows the median run):")
    width = max(len(name) for name in runs)
    for name, results in runs.items():
        figures = ", ".join(f"{r.hello.req_per_s:,.0f}" if r.hello.ok else "-" for r in results)
        print(f"  {name:<{width}}  {figures}")


# --------------------------------------------------------------------------- report


def fmt_mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n else "-"


def print_table(results: list[ServerResult]) -> None:
    base = next((r for r in results if r.name == BASELINE and r.hello.ok), None)
    wsgi_base = next((r for r in results if r.name == WSGI_BASELINE and r.hello.ok), None)
    headers = ["server", "version", "req/s", "vs baseline", "download MB/s", "RSS idle MB", "RSS peak MB"]
    headers += ["procs", "failures", "note"]
    rows = []
    for r in results:
        if r.skipped and not r.hello.ok:
            rows.append([r.name, r.version, "-", "-", "-", "-", "-", "-", "-", r.skipped])
            continue
        notes = [n for n in (r.skipped, r.hello.error, r.download.error) if n]
        rps = f"{r.hello.req_per_s:,.0f}" if r.hello.ok else "-"
        ref = wsgi_base if is_wsgi(r.name) else base
        ratio = f"{r.hello.req_per_s / ref.hello.req_per_s:.2f}x" if ref and r.hello.ok else "n/a"
        mbps = f"{r.download.body_mb_per_s:,.1f}" if r.download.ok else "-"
        rows.append(
            [
                r.name, r.version, rps, ratio, mbps, fmt_mb(r.rss_idle), fmt_mb(r.rss_peak),
                str(r.procs or "-"), str(r.failures), "; ".join(notes),
            ]
        )  # fmt: skip
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    right = {2, 3, 4, 5, 6, 7, 8}

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print(f"(baseline: {BASELINE} for ASGI rows, {WSGI_BASELINE} for the *-wsgi rows)")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", "-n", type=int, default=None, help="requests in the '/' run (default 20000)")
    p.add_argument("--clients", "-c", type=int, default=10, help="h2load connections for '/' (default 10)")
    p.add_argument("--streams", "-m", type=int, default=10, help="concurrent streams per connection (default 10)")
    p.add_argument("--downloads", type=int, default=None, help="5 MiB downloads on one stream (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured '/' requests first (default requests/10)")
    p.add_argument(
        "--duration", type=float, default=None, help="time bound in seconds for each h2load run (default 120)"
    )
    p.add_argument("--startup-timeout", type=float, default=15.0, help="seconds a server gets to become ready")
    p.add_argument("--floor-iterations", type=int, default=None, help="h2 floor exchanges per round (default 5000)")
    p.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma list from: " + ", ".join(ALL_SERVERS))
    p.add_argument("--rounds", type=int, default=None, help="runs of every server, taking turns (default 3; quick 1)")
    p.add_argument(
        "--h2gate-python",
        metavar="PYTHON",
        help="serve the h2gate rows with the h2gate installed for this Python (e.g. a venv with the compiled "
        "wheel: the row as released), not this checkout; the version column names the build",
    )
    p.add_argument("--quick", action="store_true", help="small smoke run (2000 requests, 3 downloads, short bounds)")
    p.add_argument(
        "--scenarios", action="store_true", help="afterwards run bench/scenarios.py too (with --quick if given)"
    )
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "requests": 2000 if quick else 20000,
        "downloads": 3 if quick else 20,
        "duration": 30.0 if quick else 120.0,
        "floor_iterations": 1000 if quick else 5000,
        "rounds": 1 if quick else 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.warmup is None:
        args.warmup = min(2000, args.requests // 10)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(ALL_SERVERS)}")
    if args.requests < 1 or args.downloads < 1 or args.duration <= 0 or args.rounds < 1:
        p.error("--requests, --downloads, --duration and --rounds must be positive")
    args.server_names = names
    if args.h2gate_python:
        for name in names:
            if SPECS[name].module == "h2gate":
                SPECS[name] = installed_h2gate(SPECS[name], args.h2gate_python)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("h2load") is None:
        print("h2load not found on PATH (install nghttp2-client)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("psutil") is None:
        print("psutil is required: pip install psutil (or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    interrupt_on_sigterm()  # so a SIGTERM also runs the cleanup below

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {h2load_version()}\n"
        f"'/' run: h2load -c {args.clients} -m {args.streams} -n {args.requests} (after {args.warmup} warm-up); "
        f"download run: h2load -c 1 -m 1 -n {args.downloads} (5 MiB each); bound {args.duration:.0f}s per run",
        flush=True,
    )
    runs: dict[str, list[ServerResult]] = {name: [] for name in args.server_names}
    floors: list[tuple[float, float]] = []
    native_floors: list[float] = []
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="h2gate-bench-") as tmp:
            workdir = Path(tmp)
            cert, key = make_cert(workdir)
            for round_no in range(1, args.rounds + 1):
                if args.rounds > 1:
                    print(f"== round {round_no} of {args.rounds}", flush=True)
                # Every other round in reverse (A B, B A, ...): when the machine speeds up or slows down
                # during a run, the server that always went second would take the drift alone.
                order = args.server_names if round_no % 2 else args.server_names[::-1]
                for name in order:
                    earlier = runs[name]
                    if earlier and earlier[0].skipped and not earlier[0].hello.ok:
                        continue  # not installed or failed to start: said so in round 1
                    print(f"[{name}] (1-min load average before start: {os.getloadavg()[0]:.2f})", flush=True)
                    result = bench_server(SPECS[name], args, cert, key, workdir)
                    if result.skipped and not result.hello.ok and name in OPTIONAL:
                        print(f"  {name} unavailable: {result.skipped}", flush=True)
                    earlier.append(result)
                floors.append(h2_floor(args.floor_iterations))
                if (native := codec_floor(args.floor_iterations)) is not None:
                    native_floors.append(native)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: servers stopped; partial results follow", file=sys.stderr)

    if floors:
        print_floor(args.floor_iterations, floors)
        print_codec_floor(native_floors)
    print()
    results = [median_run(found) for found in runs.values() if found]
    if results:
        print_table(results)
        if args.rounds > 1:
            print_rounds({name: found for name, found in runs.items() if found})
    else:
        print("no server run completed")
    if args.scenarios and not interrupted:
        from bench.scenarios import main as scenarios_main  # it imports this module's SPECS

        return scenarios_main(["--quick"] if args.quick else [])
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
