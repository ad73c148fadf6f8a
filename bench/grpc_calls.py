"""gRPC unary calls per second, and whether each server gets gRPC right: h2gate against its peers.

Every server serves the same connectrpc app (bench/grpc_app.py: the
example's GreetService, examples/grpc) with one worker over TLS, started
afresh for each round, the servers taking turns. For each server:

1. **Does gRPC work?** A grpcio client makes a unary call (its trailing
   metadata must arrive), a server-streaming call, a full-duplex bidi
   ping-pong (each request sent only after the previous reply: a 5 s deadline
   catches a half-duplex server) and a call that fails with INVALID_ARGUMENT.
   The column says "ok", or what went wrong.
2. **How fast?** ``h2load -c 10 -m 10`` POSTs one prepared gRPC request
   (a length-prefixed GreetRequest, ``content-type: application/grpc``,
   ``te: trailers``) to ``/greet.v1.GreetService/Greet``, after a warm-up.
   h2load only sees HTTP statuses, so step 1 is what says whether those 200s
   carried a gRPC status in their trailers. Besides calls per second, the
   server's CPU time per call (all its processes and threads) is printed: on
   a shared machine it moves much less than the rate.

Nothing is asserted: figures are printed. Every run is bounded (start-up
timeout, h2load's ``-n`` and a wall-clock limit, SIGTERM then SIGKILL).

    python bench/grpc_calls.py --quick
    python bench/grpc_calls.py --servers h2gate-trio,hypercorn-asyncio --rounds 5
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import (
    HOST,
    ROOT,
    LoadResult,
    ServerProcess,
    ServerSpec,
    free_port,
    h2load_version,
    interrupt_on_sigterm,
    make_cert,
    module_version,
    parse_h2load,
)

EXAMPLE = ROOT / "examples" / "grpc"
METHOD = "/greet.v1.GreetService/Greet"
ASGI, WSGI = "bench.grpc_app:asgi_app", "bench.grpc_app:wsgi_app"
Argv = Callable[[int, Path, Path], list[str]]


# --------------------------------------------------------------------------- servers


def _h2gate(app: str, *extra: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [
            sys.executable, "-m", "h2gate", app, "-b", f"{HOST}:{port}", "--certfile", str(cert),
            "--keyfile", str(key), "--no-access-log", "--log-level", "warning", *extra,
        ]  # fmt: skip

    return argv


def _hypercorn(app: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        config = cert.parent / "hypercorn.toml"  # h2load does not reconnect after Hypercorn's 1000-request cap
        config.write_text("keep_alive_max_requests = 1000000000\n")
        return [
            sys.executable, "-m", "hypercorn", app, "--config", str(config), "--certfile", str(cert),
            "--keyfile", str(key), "-b", f"{HOST}:{port}", "--workers", "1", "-k", "asyncio",
        ]  # fmt: skip

    return argv


def _granian(interface: str, app: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", interface, "--http", "2", "--no-ws",
            "--host", HOST, "--port", str(port), "--workers", "1",
            "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), app,
        ]  # fmt: skip

    return argv


def _h2corn(port: int, cert: Path, key: Path) -> list[str]:
    return [
        sys.executable, "-m", "h2corn", ASGI, "--host", HOST, "--port", str(port), "--certfile", str(cert),
        "--keyfile", str(key), "--grpc", "--no-access-log",
    ]  # fmt: skip


def _pyvoy(interface: str, app: str) -> Argv:
    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [
            str(Path(sys.executable).parent / "pyvoy"), "--address", HOST, "--port", str(port), "--tls-cert", str(cert),
            "--tls-key", str(key), "--tls-disable-http3", "--interface", interface, "--log-level", "warning", app,
        ]  # fmt: skip

    return argv


SPECS: dict[str, ServerSpec] = {
    "h2gate-asyncio": ServerSpec("h2gate-asyncio", _h2gate(ASGI, "--loop", "asyncio"), "h2gate"),
    "h2gate-trio": ServerSpec("h2gate-trio", _h2gate(ASGI, "--loop", "trio"), "h2gate"),
    "hypercorn-asyncio": ServerSpec("hypercorn-asyncio", _hypercorn(ASGI), "hypercorn"),
    "granian": ServerSpec("granian", _granian("asgi", ASGI), "granian"),
    "h2corn": ServerSpec("h2corn", _h2corn, "h2corn"),
    "pyvoy": ServerSpec("pyvoy", _pyvoy("asgi", ASGI), "pyvoy"),
    "h2gate-wsgi": ServerSpec("h2gate-wsgi", _h2gate(WSGI), "h2gate"),
    "hypercorn-wsgi": ServerSpec("hypercorn-wsgi", _hypercorn(WSGI), "hypercorn"),
    "granian-wsgi": ServerSpec("granian-wsgi", _granian("wsgi", WSGI), "granian"),
    "pyvoy-wsgi": ServerSpec("pyvoy-wsgi", _pyvoy("wsgi", WSGI), "pyvoy"),
}


def installed(module: str) -> bool:
    return module_version(module) != "not installed"


def wait_listening(server: ServerProcess, timeout: float) -> str | None:
    """Until a TLS handshake with ALPN h2 succeeds on the port; else why not."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited with code {server.proc.returncode}: {server.log_tail(3)}"
        try:
            with socket.create_connection((HOST, server.port), timeout=1) as raw, ctx.wrap_socket(raw) as sock:
                if sock.selected_alpn_protocol() == "h2":
                    return None
                last = f"ALPN {sock.selected_alpn_protocol()!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    return f"not listening after {timeout:.0f}s ({last})"


# --------------------------------------------------------------------------- does gRPC work?


def grpc_check(port: int, ca: Path) -> str:
    """'ok', or what a grpcio client found wrong (unary+trailers, server stream, bidi ping-pong, error status)."""
    import grpc
    from greet.v1.greet_pb2 import GreetRequest
    from greet.v1.greet_pb2_grpc import GreetServiceStub

    problems: list[str] = []
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        stub = GreetServiceStub(channel)

        def attempt(what: str, fn: Callable[[], str | None]) -> None:
            try:
                wrong = fn()
            except grpc.RpcError as exc:
                wrong = f"{exc.code().name} {exc.details()!r}"  # type: ignore[attr-defined]
            if wrong:
                problems.append(f"{what}: {wrong[:100]}")

        def unary() -> str | None:
            reply, call = stub.Greet.with_call(GreetRequest(name="bench"), timeout=5)
            if reply.greeting != "Hello, bench!":
                return f"reply {reply.greeting!r}"
            if ("x-served-by", "bench") not in (call.trailing_metadata() or ()):
                return "trailing metadata missing"
            return None

        def server_stream() -> str | None:
            got = [r.greeting for r in stub.GreetMany(GreetRequest(name="bench"), timeout=5)]
            return None if got == ["Hello, bench!"] * 3 else f"got {got!r}"

        def bidi() -> str | None:
            outbox: queue.Queue[GreetRequest | None] = queue.Queue()

            def requests() -> Iterator[GreetRequest]:
                while (item := outbox.get()) is not None:
                    yield item

            outbox.put(GreetRequest(name="0"))
            replies = []
            for reply in stub.Chat(requests(), timeout=5):
                replies.append(reply.greeting)
                outbox.put(GreetRequest(name=str(len(replies))) if len(replies) < 3 else None)
            return None if len(replies) == 3 else f"got {replies!r}"

        def error() -> str | None:
            try:
                stub.Greet(GreetRequest(name=""), timeout=5)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
                    return None
                raise
            return "no error"

        for what, fn in (("unary", unary), ("stream", server_stream), ("bidi", bidi), ("error", error)):
            attempt(what, fn)
    if not problems:
        return "ok"
    causes = {p.split(": ", 1)[1] for p in problems}
    if len(problems) == 4 and len(causes) == 1:
        return f"all four fail: {causes.pop()}"
    return "; ".join(problems)


# --------------------------------------------------------------------------- how fast?


def request_body(path: Path) -> Path:
    from greet.v1.greet_pb2 import GreetRequest

    message = GreetRequest(name="bench").SerializeToString()
    path.write_bytes(struct.pack(">BI", 0, len(message)) + message)
    return path


def h2load_grpc(port: int, body: Path, requests: int, clients: int, streams: int, limit: float) -> LoadResult:
    argv = [
        "h2load", "--npn-list=h2", "-t", "1", "-c", str(clients), "-m", str(streams), "-n", str(requests),
        f"--connection-inactivity-timeout={max(1, int(limit))}", "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"https://{HOST}:{port}{METHOD}",
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return LoadResult(error=f"h2load killed after {limit:.0f}s", total=requests)
    res = parse_h2load(done.stdout)
    if not res.ok:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        res.error = f"{res.error}: {tail[0]}"
    return res


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (threads included), in seconds."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass
class Outcome:
    name: str
    check: str = ""
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per call of the measured run
    failures: int = 0
    notes: list[str] = field(default_factory=list)


def run_one(spec: ServerSpec, args: argparse.Namespace, workdir: Path, body: Path, out: Outcome) -> None:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    port = free_port()
    server = ServerProcess(spec, port, cert, key, workdir / f"{spec.name}.log")
    try:
        why = wait_listening(server, args.startup_timeout)
        if why:
            out.notes.append(why)
            return
        check = grpc_check(port, workdir / "ca.pem")
        out.check = check if not out.check or out.check == "ok" else out.check
        warm = h2load_grpc(port, body, max(100, args.requests // 10), args.clients, args.streams, args.duration)
        if not warm.ok:
            out.notes.append(f"warm-up: {warm.error}")
            return
        before = cpu_seconds(server.proc.pid)
        res = h2load_grpc(port, body, args.requests, args.clients, args.streams, args.duration)
        used = cpu_seconds(server.proc.pid) - before
        if not res.ok or res.error:
            out.notes.append(res.error)
        if res.ok:
            out.rates.append(res.req_per_s)
            out.cpu_us.append(used / max(1, res.total) * 1e6)
            out.failures += res.failures
    finally:
        server.stop()


def print_table(outcomes: list[Outcome]) -> None:
    base = next((o for o in outcomes if o.name == "hypercorn-asyncio" and o.rates), None)
    base_rate = statistics.median(base.rates) if base else 0.0
    rows = [("server", "version", "calls/s", "vs hypercorn", "CPU us/call", "non-2xx", "gRPC (grpcio)", "note")]
    for o in outcomes:
        rate = statistics.median(o.rates) if o.rates else 0.0
        rows.append(
            (
                o.name,
                module_version(SPECS[o.name].module),
                (f"{rate:,.0f}" if o.check == "ok" else f"({rate:,.0f})") if o.rates else "-",
                f"{rate / base_rate:.2f}x" if o.rates and base_rate and o.check == "ok" else "n/a",
                f"{statistics.median(o.cpu_us):,.0f}" if o.cpu_us else "-",
                str(o.failures) if o.rates else "-",
                o.check or "-",
                "; ".join(dict.fromkeys(o.notes)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  ----")
    print("(in parentheses: the rate of a server whose gRPC does not work: see its gRPC column)")
    print("(CPU us/call: user + system time of the server's processes and threads over the measured run, per call)")
    print("calls/s per round, and CPU us per call (the table shows the medians):")
    for o in outcomes:
        if o.rates:
            rates = ", ".join(f"{r:,.0f}" for r in o.rates)
            print(f"  {o.name:<18} {rates}  |  " + ", ".join(f"{c:,.0f}" for c in o.cpu_us))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SPECS), help="comma-separated, of: " + ", ".join(SPECS))
    parser.add_argument("-n", "--requests", type=int)
    parser.add_argument("-c", "--clients", type=int, default=10)
    parser.add_argument("-m", "--streams", type=int, default=10)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, default=120.0, help="wall-clock limit of each h2load run")
    parser.add_argument("--startup-timeout", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="small counts, one round: checks the harness")
    args = parser.parse_args(argv)
    args.requests = args.requests or (2000 if args.quick else 20000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        print(f"unknown server(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(EXAMPLE))  # greet.v1 for the check and the request body
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLE), os.environ.get("PYTHONPATH", "")) if p)
    outcomes = {n: Outcome(n) for n in names}
    print(f"{h2load_version()}; {args.rounds} round(s) of {args.requests} unary calls, -c {args.clients} "
          f"-m {args.streams}, TLS, one worker per server; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="h2gate-grpc-bench-") as tmp:
        workdir = Path(tmp)
        make_cert(workdir)
        body = request_body(workdir / "greet.bin")
        try:
            for _ in range(args.rounds):
                for name in names:
                    if not installed(SPECS[name].module):
                        outcomes[name].notes.append(f"{SPECS[name].module} is not installed")
                        continue
                    run_one(SPECS[name], args, workdir, body, outcomes[name])
        except KeyboardInterrupt:
            print("interrupted: the table shows what finished", file=sys.stderr)
    print_table(list(outcomes.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
