"""A/B on a shared machine: two servers under the same load at the same time, CPU per request for each.

Run from anywhere:  python bench/ab.py --servers h2gate-asyncio,h2gate-asyncio-log [--rounds 10] [-n 30000]
Two builds of h2gate:  python bench/ab.py --servers h2gate-asyncio-log,h2gate-asyncio-log --tree-a /tmp/before
(``git archive <commit> | tar -x -C /tmp/before``; the side without a tree runs this checkout)
An installed build:  python bench/ab.py --servers h2gate-ngh2-asyncio-log,h2gate-ngh2-asyncio-log \\
    --python-b /tmp/compiled-venv/bin/python   (that venv's h2gate, e.g. the compiled wheel, serves B)

bench/cpu.py measures servers one after another, so whatever else the
machine does in between lands on one of them. Here both servers run at once,
each driven by its own ``h2load -c 10 -m 10 -n N`` started together, so a
busy minute slows both alike. Each round starts both afresh (the one started
first alternates), warms them up, and reads their CPU time (user + system,
every thread and child, from ``/proc``) around the run. Printed per round:
each server's microseconds of CPU per request and req/s, then the medians
and the median of the per-round ratios B/A, which is the figure to quote.
Printed, never checked.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import tree_cpu_seconds
from bench.peers import SPECS, installed_h2gate
from bench.scenarios import in_workdir, running
from bench.servers import HOST, LoadResult, ServerSpec, run_h2load


def from_tree(spec: ServerSpec, name: str, tree: str) -> ServerSpec:
    """``spec`` (an h2gate row) run with the h2gate package found in ``tree`` instead of this checkout.

    ``-P`` keeps the working directory (this checkout, where servers start) off
    ``sys.path``: without it ``python -m h2gate`` imports the h2gate beside it
    whatever PYTHONPATH says, and both sides would run the same code.
    """

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        python, *rest = spec.argv(port, cert, key)
        return ["env", f"PYTHONPATH={tree}", python, "-P", *rest]

    return ServerSpec(name, argv, spec.module)


def one_round(names: list[str], args: argparse.Namespace, workdir: Path) -> dict[str, tuple[float, float]] | str:
    """{name: (us of CPU per request, req/s)} for both servers loaded together, or why there is no figure."""
    a, b = names
    with running(SPECS[a], workdir, 15) as first, running(SPECS[b], workdir, 15) as second:
        servers = {a: first, b: second}
        for name, server in servers.items():
            if isinstance(server, str):
                return f"{name} did not start: {server.splitlines()[0]}"
        urls = {name: f"https://{HOST}:{server.port}/" for name, server in servers.items()}  # type: ignore[union-attr]
        for url in urls.values():
            run_h2load(url, args.warmup, 10, 10, args.duration)
        pids = {name: server.proc.pid for name, server in servers.items()}  # type: ignore[union-attr]
        before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        results: dict[str, LoadResult] = {}

        def load(name: str) -> None:
            results[name] = run_h2load(urls[name], args.requests, 10, 10, args.duration)

        threads = [threading.Thread(target=load, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out: dict[str, tuple[float, float]] = {}
        for name, pid in pids.items():
            res = results[name]
            if not res.ok or res.failures:
                return f"{name}: {res.error or f'{res.failures} failures'}"
            out[name] = ((tree_cpu_seconds(pid) - before[name]) * 1e6 / args.requests, res.req_per_s)
        return out


def add_side_options(p: argparse.ArgumentParser) -> None:
    """--tree-a/-b and --python-a/-b: which h2gate build each side runs (read back by :func:`resolve_sides`)."""
    for side in "ab":
        which = f"{side.upper()} (an h2gate row)"
        p.add_argument(f"--tree-{side}", help=f"run {which} with the h2gate package in this directory")
        p.add_argument(f"--python-{side}", help=f"run {which} with the h2gate installed for this Python")


def resolve_sides(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The two rows of ``--servers``, each side registered in SPECS with its --tree-x or --python-x applied."""
    names = [n for n in args.servers.split(",") if n]
    if len(names) != 2 or any(n not in SPECS for n in names):
        p.error(f"--servers takes two names from: {', '.join(SPECS)}")
    for i, (tree, python) in enumerate(((args.tree_a, args.python_a), (args.tree_b, args.python_b))):
        if tree is not None or python is not None:
            flag = f"--{'tree' if tree else 'python'}-{'ab'[i]}"
            if tree is not None and python is not None:
                p.error(f"--tree-{'ab'[i]} and --python-{'ab'[i]}: one or the other")
            if SPECS[names[i]].module != "h2gate":
                p.error(f"{flag} applies to h2gate rows, not {names[i]}")
            side = f"{'AB'[i]}:{names[i]}"
            if tree is not None:
                SPECS[side] = from_tree(SPECS[names[i]], side, tree)
            else:
                SPECS[side] = installed_h2gate(SPECS[names[i]], python, side)
                if problem := SPECS[side].unavailable():
                    p.error(problem)
                print(f"{side}: h2gate {SPECS[side].version()} from {python}")
            names[i] = side
    if names[0] == names[1]:
        p.error("--servers takes two different rows, or the same row with --tree-a/-b or --python-a/-b")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", required=True, help="two names from bench/peers.py: A,B")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--requests", "-n", type=int, default=30000)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--duration", type=float, default=300.0, help="time bound of each h2load run, seconds")
    add_side_options(p)
    args = p.parse_args(argv)
    names = resolve_sides(p, args)

    def body(workdir: Path) -> None:
        import os

        cpu: dict[str, list[float]] = {n: [] for n in names}
        rps: dict[str, list[float]] = {n: [] for n in names}
        print(f"A/B, both loaded at once: h2load -c 10 -m 10 -n {args.requests} each; load average "
              f"{os.getloadavg()[0]:.2f}")  # fmt: skip
        for round_no in range(1, args.rounds + 1):
            got = one_round(names if round_no % 2 else names[::-1], args, workdir)
            if isinstance(got, str):
                print(f"  round {round_no}: no figure: {got}")
                continue
            for name, (us, rate) in got.items():
                cpu[name].append(us)
                rps[name].append(rate)
            print(f"  round {round_no}: " + "; ".join(f"{n} {got[n][0]:.1f} us, {got[n][1]:,.0f} req/s" for n in names))
        if not cpu[names[0]]:
            return
        for name in names:
            print(f"median {name}: {statistics.median(cpu[name]):.1f} us CPU per request, "
                  f"{statistics.median(rps[name]):,.0f} req/s")  # fmt: skip
        ratios = [b / a for a, b in zip(cpu[names[0]], cpu[names[1]], strict=True)]
        print(f"CPU per request {names[1]} / {names[0]}, per round: " + ", ".join(f"{r:.3f}" for r in ratios))
        print(f"median ratio {statistics.median(ratios):.3f} (load average now {os.getloadavg()[0]:.2f})")

    return in_workdir("h2gate-ab-", body)


if __name__ == "__main__":
    sys.exit(main())
