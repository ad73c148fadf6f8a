"""Measurement scenarios beyond bench/run.py's table: bulk downloads vs nghttpd, 1,000 connections, -w 2.

Run from anywhere:  python bench/scenarios.py [--quick] [--only download,connections,workers]

* ``download``: ``h2load -c 4 -m 2`` fetching 5 MiB bodies over TLS from each
  server and from ``nghttpd`` (nghttp2's C server) serving the same bytes
  from a file; prints MB/s and each server's share of nghttpd's figure.
* ``connections``: ``h2load -c 1000 -m 10`` (10,000 streams in flight) on
  ``/``; prints req/s, failures and per-request latency p50/p99 from
  h2load's ``--log-file``.
* ``workers``: h2gate with ``-w 1`` and ``-w 2`` under the small-response load.

Idle connection memory and fairness are bench/idle_memory.py and
bench/fairness.py. Figures are printed, never checked; every run is bounded
by a request count and a wall-clock limit. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app import DOWNLOAD_SIZE, HELLO
from bench.peers import SPECS
from bench.servers import (
    HOST,
    LoadResult,
    ServerProcess,
    ServerSpec,
    free_port,
    interrupt_on_sigterm,
    make_cert,
    parse_h2load,
    wait_ready,
)

SCENARIOS = ("download", "connections", "workers")
#: the ASGI field (bench/peers.py); a server that cannot run here is skipped with its reason
COMPARED = ("h2gate-asyncio", "h2gate-trio", "hypercorn-asyncio", "granian", "h2corn", "pyvoy", "uvicorn-zttp")
#: h2gate accepts 1000 connections per process by default; the scenarios ask for more.
H2GATE_EXTRA = ["--max-connections", "4000"]


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (servers and h2load inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def with_args(spec: ServerSpec, extra: list[str], name: str | None = None) -> ServerSpec:
    """``spec`` with ``extra`` command-line arguments appended."""
    base = spec.argv

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [*base(port, cert, key), *extra]

    return dataclasses.replace(spec, name=name or spec.name, argv=argv)


def server_spec(name: str) -> ServerSpec:
    spec = SPECS[name]
    return with_args(spec, H2GATE_EXTRA) if name.startswith("h2gate") else spec


def nghttpd_spec(htdocs: Path) -> ServerSpec:
    """nghttpd serving ``htdocs`` (``index.html`` = HELLO for readiness, ``download`` = 5 MiB)."""
    htdocs.mkdir(exist_ok=True)
    (htdocs / "index.html").write_bytes(HELLO)
    (htdocs / "download").write_bytes(b"x" * DOWNLOAD_SIZE)

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return ["nghttpd", "-a", HOST, "--htdocs", str(htdocs), str(port), str(key), str(cert)]

    def check() -> str | None:
        return None if shutil.which("nghttpd") else "nghttpd not found (apt-get install nghttp2-server)"

    return ServerSpec("nghttpd", argv, "", check=check)


def available(spec: ServerSpec) -> bool:
    return spec.unavailable() is None


@contextlib.contextmanager
def running(spec: ServerSpec, workdir: Path, startup: float) -> Iterator[ServerProcess | str]:
    """A started and ready server, or the reason it is not; always stopped afterwards."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    if not cert.exists():
        make_cert(workdir)
    server = ServerProcess(spec, free_port(), cert, key, workdir / f"{spec.name}.log")
    try:
        problem = wait_ready(server, startup)
        yield server if problem is None else f"{problem}\n{server.log_tail(5)}"
    finally:
        server.stop()


def each_server(specs: list[ServerSpec], workdir: Path, startup: float) -> Iterator[tuple[str, ServerProcess]]:
    """Start each server in turn, yield it while it runs; say which ones were skipped and why."""
    for spec in specs:
        if why := spec.unavailable():
            print(f"  {spec.name:<18} skipped: {why}")
            continue
        with running(spec, workdir, startup) as server:
            if isinstance(server, str):
                print(f"  {spec.name:<18} not started: {server}")
                continue
            yield spec.name, server


def in_workdir(prefix: str, body: Callable[[Path], None]) -> int:
    """Run ``body`` with a temporary directory; Ctrl-C or SIGTERM stops it cleanly (exit 130)."""
    interrupt_on_sigterm()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            body(Path(tmp))
        except KeyboardInterrupt:
            print("\ninterrupted")
            return 130
    return 0


@dataclass
class Latency:
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    count: int = 0


def h2load(
    url: str, *, requests: int, clients: int, streams: int, limit: float, log_file: Path | None = None
) -> tuple[LoadResult, Latency]:
    """One bounded h2load run (``limit`` seconds at most); latencies from ``log_file`` if given."""
    argv = [
        "h2load", "--npn-list=h2", "-t", "1", "-c", str(clients), "-m", str(streams), "-n", str(requests),
        f"--connection-inactivity-timeout={max(1, int(limit))}",
    ]  # fmt: skip
    if log_file is not None:
        argv.append(f"--log-file={log_file}")
    try:
        done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return LoadResult(error=f"h2load killed after {limit:.0f}s", total=requests), Latency()
    res = parse_h2load(done.stdout)
    if not res.ok:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        res.error = f"h2load: {tail[0]}"
    latency = Latency()
    if log_file is not None and log_file.exists():
        latency = latencies(log_file)
    return res, latency


def latencies(log_file: Path) -> Latency:
    """p50/p99 of h2load's per-request log (start time, status, duration in µs; tab separated)."""
    durations: list[float] = []
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip().isdigit():
            durations.append(int(parts[2]) / 1000)
    if len(durations) < 2:
        return Latency(count=len(durations))
    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    return Latency(cuts[49], cuts[98], len(durations))


# --------------------------------------------------------------------------- scenarios


def scenario_download(args: argparse.Namespace, workdir: Path) -> None:
    rounds = args.rounds
    print(
        f"\n== download: h2load -c 4 -m 2 -n {args.downloads} /download (5 MiB each), TLS; "
        f"{rounds} round(s), the servers taking turns, median"
    )
    specs = [server_spec(name) for name in args.servers] + [nghttpd_spec(workdir / "htdocs")]
    with contextlib.ExitStack() as stack:
        # All of them run at once so that each round measures every server within seconds:
        # this machine's speed drifts by a third over an hour, which one run per server would compare.
        urls: dict[str, str] = {}
        for spec in specs:
            if why := spec.unavailable():
                print(f"  {spec.name:<18} skipped: {why}")
                continue
            server = stack.enter_context(running(spec, workdir, args.startup_timeout))
            if isinstance(server, str):
                print(f"  {spec.name:<18} not started: {server}")
                continue
            urls[spec.name] = f"https://{HOST}:{server.port}/download"
        for url in urls.values():  # warm-up, unmeasured
            h2load(url, requests=4, clients=4, streams=2, limit=args.duration)
        runs: dict[str, list[float]] = {name: [] for name in urls}
        for round_no in range(rounds):
            order = list(urls.items())
            for name, url in order if round_no % 2 == 0 else order[::-1]:  # A B, B A: drift hits all alike
                res, _ = h2load(url, requests=args.downloads, clients=4, streams=2, limit=args.duration)
                if res.error or res.failures:
                    print(f"  {name:<18} failed: {res.error or f'{res.failures} failures'}")
                    continue
                runs[name].append(res.body_mb_per_s)
    figures = {name: statistics.median(values) for name, values in runs.items() if values}
    for name, value in figures.items():
        spread = ", ".join(f"{v:.0f}" for v in runs[name])
        print(f"  {name:<18} {value:8.1f} MB/s  (runs: {spread})")
    base = figures.get("nghttpd")
    if base:
        for name, value in figures.items():
            if name != "nghttpd":
                print(f"  {name} = {100 * value / base:.0f}% of nghttpd")


def scenario_connections(args: argparse.Namespace, workdir: Path) -> None:
    clients, requests = args.connections, args.connections * 20
    print(f"\n== connections: h2load -c {clients} -m 10 -n {requests} / (open-file limit {raise_fd_limit()})")
    for name, server in each_server([server_spec(n) for n in args.servers], workdir, args.startup_timeout):
        log_file = workdir / f"{name}-requests.log"
        url = f"https://{HOST}:{server.port}/"
        res, lat = h2load(url, requests=requests, clients=clients, streams=10, limit=args.duration, log_file=log_file)
        if not res.ok:
            print(f"  {name:<18} failed: {res.error}")
            continue
        print(
            f"  {name:<18} {res.req_per_s:8.0f} req/s  failures {res.failures:<5} "
            f"latency p50 {lat.p50_ms:7.1f} ms  p99 {lat.p99_ms:7.1f} ms  ({lat.count} logged)"
        )


def scenario_workers(args: argparse.Namespace, workdir: Path) -> None:
    requests = args.requests
    print(f"\n== workers: h2gate -w 1 vs -w 2, h2load -c 10 -m 10 -n {requests} /  (nproc {os.cpu_count()})")
    specs = [with_args(server_spec("h2gate-trio"), ["-w", str(n)], f"h2gate -w {n}") for n in (1, 2)]
    for name, server in each_server(specs, workdir, args.startup_timeout):
        url = f"https://{HOST}:{server.port}/"
        h2load(url, requests=max(100, requests // 10), clients=10, streams=10, limit=args.duration)  # warm-up
        res, _ = h2load(url, requests=requests, clients=10, streams=10, limit=args.duration)
        if not res.ok:
            print(f"  {name:<18} failed: {res.error}")
            continue
        print(f"  {name:<18} {res.req_per_s:8.0f} req/s  failures {res.failures}")


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "download": scenario_download,
    "connections": scenario_connections,
    "workers": scenario_workers,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts: checks that the harness works")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma list from: " + ", ".join(SCENARIOS))
    p.add_argument("--servers", default=",".join(COMPARED), help="comma list of bench/run.py server names")
    p.add_argument("--downloads", type=int, help="5 MiB downloads per server, at least 4 (default 40, quick 8)")
    p.add_argument("--rounds", type=int, help="download rounds, the median is printed (default 5, quick 1)")
    p.add_argument("--connections", type=int, help="concurrent connections (default 1000, quick 50)")
    p.add_argument("--requests", type=int, help="requests of the workers run (default 20000, quick 1000)")
    p.add_argument("--duration", type=float, default=120.0, help="hard limit in seconds for each h2load run")
    p.add_argument("--startup-timeout", type=float, default=15.0)
    args = p.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in args.only if s not in RUNNERS] + [s for s in args.servers if s not in SPECS]
    if unknown:
        p.error(f"unknown scenario(s) or server(s): {', '.join(unknown)}")
    args.downloads = max(4, args.downloads or (8 if args.quick else 40))  # h2load: one per connection at least
    args.rounds = max(1, args.rounds or (1 if args.quick else 5))
    args.connections = args.connections or (50 if args.quick else 1000)
    args.requests = args.requests or (1000 if args.quick else 20000)
    if args.quick:
        args.duration = min(args.duration, 30.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    print(f"h2gate scenarios: nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")

    def body(workdir: Path) -> None:
        for name in args.only:
            RUNNERS[name](args, workdir)

    return in_workdir("h2gate-scenarios-", body)


if __name__ == "__main__":
    sys.exit(main())
