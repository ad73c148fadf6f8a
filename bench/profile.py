"""Where a server's time goes under load: a py-spy profile of h2gate under h2load, grouped by module.

Run from anywhere:  python bench/profile.py [--servers h2gate-asyncio,h2gate-trio] [-n 30000]

For each server: start it (bench/peers.py command line), warm it up, then
record it with ``py-spy record --format raw`` (collapsed stacks, 250 samples a
second, idle samples left out) for exactly one ``h2load -c 10 -m 10 -n N``
run on the tiny response. Only the main thread (the event loop) is counted:
py-spy takes a thread parked in ``Event.wait`` or ``time.sleep`` (the log
writer, idle WSGI workers) for a busy one. Each sample is charged to the module of its leaf
frame (self time) and, separately, to every h2gate module on its stack
(inclusive time), and both are printed as shares of the busy samples. The
raw stacks stay in ``--keep DIR`` if given (for a flame graph). Printed,
never checked; needs py-spy (the bench extra) and ptrace rights (root, or
``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import SPECS
from bench.scenarios import in_workdir, running
from bench.servers import HOST, run_h2load

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def module_of(path: str) -> str:
    """A frame's file as py-spy names it (``h2gate/tls/stream.py``, ``trio/_core/_run.py``), cleaned up."""
    path = path.replace("\\", "/")
    if "/h2gate/" in path:
        return "h2gate/" + path.rsplit("/h2gate/", 1)[-1]
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    return path


GROUPS = (
    ("h2 library (h2, hpack, hyperframe)", ("h2/", "hpack/", "hyperframe/")),
    ("trio scheduler and I/O (trio, outcome, attrs-made methods)", ("trio/", "outcome/", "<attrs")),
    ("asyncio", ("asyncio/",)),
    ("pyOpenSSL (TLS records, AES-GCM)", ("OpenSSL/", "cffi/")),
    ("the app (bench/app.py)", ("app.py",)),
)


def group_of(module: str) -> str:
    """The layer a module belongs to: an h2gate folder, a library, or the rest of the standard library."""
    if module.startswith("h2gate/"):
        parts = module.split("/")
        return "h2gate/" + parts[1] + ("/" if len(parts) > 2 else "")
    for name, prefixes in GROUPS:
        if module.startswith(prefixes):
            return name
    return "standard library, other (contextlib, enum, socket, ...)"


def parse_raw(text: str) -> tuple[Counter[str], Counter[str], int, Counter[str]]:
    """Self samples per module, inclusive samples per h2gate module, busy samples, self samples per function."""
    own: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        matches = [m for f in stack.split(";") if (m := _FRAME.match(f.strip()))]
        frames = [m.group("file") for m in matches]
        if not frames or frames[0] == "threading.py":
            continue  # another thread (the log writer, WSGI workers): its idle waits look busy to py-spy
        total += count
        own[module_of(frames[-1])] += count
        functions[f"{matches[-1].group('func')} ({module_of(frames[-1])})"] += count
        for module in {module_of(f) for f in frames if module_of(f).startswith("h2gate/")}:
            inclusive[module] += count
    return own, inclusive, total, functions


def profile(name: str, args: argparse.Namespace, workdir: Path) -> None:
    with running(SPECS[name], workdir, 15) as server:
        if isinstance(server, str):
            print(f"{name}: not started: {server}")
            return
        url = f"https://{HOST}:{server.port}/"
        run_h2load(url, 3000, 10, 10, 60)  # warm-up
        raw = workdir / f"{name}.raw"
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "250",
             "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches
        res = run_h2load(url, args.requests, 10, 10, 120)
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not raw.exists():
            print(f"{name}: py-spy wrote nothing: {err.strip()[-200:]}")
            return
        own, inclusive, total, functions = parse_raw(raw.read_text())
        if args.keep:
            shutil.copy(raw, Path(args.keep) / raw.name)
        rps = f"{res.req_per_s:,.0f} req/s" if res.ok else f"h2load: {res.error}"
        print(f"\n== {name}: {total} busy samples during h2load -c 10 -m 10 -n {args.requests} ({rps})")
        groups: Counter[str] = Counter()
        for module, count in own.items():
            groups[group_of(module)] += count
        print("  self time by layer or library:")
        for group, count in groups.most_common():
            print(f"    {100 * count / total:5.1f}%  {group}")
        print("  self time by module (the frame on top of the stack):")
        for module, count in own.most_common(args.top):
            print(f"    {100 * count / total:5.1f}%  {module}")
        print("  self time by function:")
        for function, count in functions.most_common(args.top):
            print(f"    {100 * count / total:5.1f}%  {function}")
        print("  inclusive time of h2gate modules (on the stack):")
        skip = {"h2gate/__main__.py", "h2gate/cli.py", "h2gate/ops/run.py"}  # on every stack
        for module, count in [(m, c) for m, c in inclusive.most_common() if m not in skip][: args.top]:
            print(f"    {100 * count / total:5.1f}%  {module}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="h2gate-asyncio,h2gate-trio", help="h2gate rows of bench/peers.py")
    p.add_argument("--requests", "-n", type=int, default=30000)
    p.add_argument("--top", type=int, default=20, help="modules printed per list")
    p.add_argument("--keep", help="copy the raw collapsed stacks into this directory")
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy not found (pip install -e '.[bench]')", file=sys.stderr)
        return 2

    def body(workdir: Path) -> None:
        for name in args.servers.split(","):
            profile(name, args, workdir)

    return in_workdir("h2gate-profile-", body)


if __name__ == "__main__":
    sys.exit(main())
