"""A quick check of an installed h2gate (cibuildwheel's test-command; tests/run.sh for the wheel it builds).

    python build_support/smoke.py [--expect compiled|pure]

Run from outside the source tree (``python -P`` or another directory) so the installed h2gate is the one
tested. Checks that ``h2gate --version`` names the expected build and that every module setup.py compiled
is an extension module, then serves the bundled hello app on a free loopback port (both codecs when ngh2 is
installed) and asks it for ``/`` with ``python -m h2gate.healthcheck`` (h2c). Exit 0 when all of it holds.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import sys
import time

HOT = ("h2gate.protocol.core", "h2gate.protocol.driver", "h2gate.http.validate", "h2gate.asgi.http")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_once(codec: str) -> str | None:
    """None when the hello app answered over h2c with ``codec``, else what went wrong."""
    port = _free_port()
    cmd = [sys.executable, "-P", "-m", "h2gate", "h2gate.examples.hello:app", "-b", f"127.0.0.1:{port}"]
    server = subprocess.Popen([*cmd, "--codec", codec], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            probe = [sys.executable, "-P", "-m", "h2gate.healthcheck", "-q", "--timeout", "2"]
            if subprocess.run([*probe, f"http://127.0.0.1:{port}/"], capture_output=True, timeout=10).returncode == 0:
                return None
            time.sleep(0.2)
        return f"--codec {codec}: no healthy answer within 30 s (exit {server.poll()})"
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        print(out.strip().splitlines()[0] if out.strip() else f"(--codec {codec}: no output)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--expect", choices=("compiled", "pure"), default="compiled")
    args = p.parse_args(argv)
    import h2gate

    problems = []
    version = subprocess.run([sys.executable, "-P", "-m", "h2gate", "--version"], capture_output=True, text=True)
    print(f"{version.stdout.strip()} from {os.path.dirname(h2gate.__file__)}")
    wanted = "compiled with mypyc" if args.expect == "compiled" else "pure Python"
    if wanted not in version.stdout:
        problems.append(f"h2gate --version says {version.stdout.strip()!r}, expected {wanted!r}")
    for name in HOT:
        spec = importlib.util.find_spec(name)
        native = spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
        if native != (args.expect == "compiled"):
            problems.append(f"{name} is {'an extension module' if native else 'pure Python'} ({spec and spec.origin})")
    codecs = ["h2"] + (["ngh2"] if importlib.util.find_spec("ngh2") is not None else [])
    problems += filter(None, map(_serve_once, codecs))
    for problem in problems:
        print(f"smoke: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
