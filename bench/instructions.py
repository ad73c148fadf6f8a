"""Instructions per request under valgrind: an A/B that a busy host cannot move.

Run from anywhere:  python bench/instructions.py --servers h2gate-asyncio,h2gate-asyncio-log
The compiled wheel on both sides:  ... --python-a /tmp/fast/bin/python --python-b /tmp/fast/bin/python

bench/ab.py measures CPU time, and on a shared VM the same build's rounds
can differ by a quarter, so a change of a few per cent (the access log's
share, issue 22's target 1) drowns. This counts instructions instead:
each server runs under ``valgrind --tool=callgrind``, whose count of
executed instructions does not depend on what else the host does.

Per server: start it under callgrind, warm it up with ``--warmup`` requests,
then twice zero the counters (``callgrind_control -z``), run ``h2load -c 10
-m 10`` with N and then 2N requests, and dump (``-d``). The per-request
figure is the difference of the two counts divided by N, so start-up, TLS
handshakes (10 per run either way) and shutdown cancel out. Printed per
round and as medians, with the ratio B/A; never asserted.

What the count leaves out, so read it as the user-space half of the cost:

* the kernel's work (``send``, ``recv``, a log batch's ``write``): the
  count is user space only;
* cache misses and branch mispredictions: an instruction is an instruction;
* pacing: under callgrind the server runs about 50 times slower, so a
  flush made every 50 ms (the access log's stream sink, ``LINGER``) takes
  far fewer lines each time than at full speed; per request that counts
  more flushes than a real run makes, so a log's share comes out high,
  not low.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ab import add_side_options, resolve_sides
from bench.peers import SPECS
from bench.scenarios import in_workdir, running
from bench.servers import HOST, ServerSpec, run_h2load

#: callgrind: count instructions only, no cache simulation; one output file per dump.
VALGRIND = ("valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no")


def under_valgrind(spec: ServerSpec, out_dir: Path) -> ServerSpec:
    """``spec`` with its program started under callgrind (after ``env`` and its options, if any)."""

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        command = spec.argv(port, cert, key)
        at = 0
        if command[0] == "env":
            at = 1
            while at < len(command) and (command[at] == "-u" or "=" in command[at] or command[at - 1] == "-u"):
                at += 1
        out = f"--callgrind-out-file={out_dir / spec.name.replace(':', '_')}.%p.out"
        return [*command[:at], *VALGRIND, out, *command[at:]]

    return ServerSpec(spec.name, argv, spec.module, check=spec.check, describe=spec.describe)


def counted(pid: int, url: str, requests: int, time_limit: float, out_dir: Path) -> int | str:
    """Instructions the server ``pid`` executed while h2load sent ``requests``, or why there is no count."""
    zero = subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, text=True, timeout=60)
    if zero.returncode != 0:
        return f"callgrind_control -z failed: {zero.stdout.strip()} {zero.stderr.strip()}"
    before = set(out_dir.iterdir())
    load = run_h2load(url, requests, 10, 10, time_limit)
    if not load.ok or load.failures:
        return load.error or f"{load.failures} failed requests"
    dump = subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, text=True, timeout=60)
    if dump.returncode != 0:
        return f"callgrind_control -d failed: {dump.stdout.strip()} {dump.stderr.strip()}"
    new = sorted(set(out_dir.iterdir()) - before)
    if len(new) != 1:
        return f"expected one new callgrind dump, found {len(new)}"
    found = re.search(r"^summary: (\d+)", new[0].read_text(errors="replace"), re.MULTILINE)
    new[0].unlink()
    return int(found.group(1)) if found else f"no summary line in {new[0].name}"


def one_server(spec: ServerSpec, args: argparse.Namespace, workdir: Path) -> float | str:
    """Instructions per request for one fresh start of ``spec`` under callgrind."""
    out_dir = workdir / "callgrind"
    out_dir.mkdir(exist_ok=True)
    with running(under_valgrind(spec, out_dir), workdir, args.startup_timeout) as server:
        if isinstance(server, str):
            return f"did not start: {server.splitlines()[0]}"
        url = f"https://{HOST}:{server.port}/"
        warm = run_h2load(url, args.warmup, 10, 10, args.duration)
        if not warm.ok:
            return f"warm-up failed: {warm.error}"
        counts = [counted(server.proc.pid, url, n, args.duration, out_dir) for n in (args.requests, 2 * args.requests)]
        for count in counts:
            if isinstance(count, str):
                return count
        small, large = counts
        return (large - small) / args.requests  # type: ignore[operator]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", required=True, help="two names from bench/peers.py: A,B")
    p.add_argument("--rounds", type=int, default=3, help="fresh starts of each server, taking turns")
    p.add_argument("--requests", "-n", type=int, default=2000, help="N: the runs counted send N and 2N requests")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--duration", type=float, default=300.0, help="time bound of each h2load run, seconds")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="seconds a server under valgrind gets")
    add_side_options(p)
    args = p.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "h2load"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed (apt-get install valgrind nghttp2-client)")
    names = resolve_sides(p, args)

    def body(workdir: Path) -> None:
        per: dict[str, list[float]] = {n: [] for n in names}
        print(f"instructions per request under callgrind: h2load -c 10 -m 10, runs of {args.requests} and "
              f"{2 * args.requests} requests after {args.warmup}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        for round_no in range(1, args.rounds + 1):
            got: dict[str, float] = {}
            for name in names if round_no % 2 else names[::-1]:
                result = one_server(SPECS[name], args, workdir)
                if isinstance(result, str):
                    print(f"  round {round_no}: {name}: no figure: {result}", flush=True)
                    continue
                got[name] = result
                per[name].append(result)
            print(f"  round {round_no}: " + "; ".join(f"{n} {got[n]:,.0f}" for n in names if n in got), flush=True)
        if not all(per.values()):
            return
        a, b = (statistics.median(per[n]) for n in names)
        for name, value in zip(names, (a, b), strict=True):
            print(f"median {name}: {value:,.0f} instructions per request ({len(per[name])} rounds)")
        print(f"{names[1]} / {names[0]}: {b / a:.4f} ({(b - a) / a:+.1%}, {b - a:+,.0f} instructions per request)")

    return in_workdir("h2gate-instructions-", body)


if __name__ == "__main__":
    sys.exit(main())
