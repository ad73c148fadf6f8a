"""examples/grpc runs as docs/grpc.md says: the committed generated code, ASGI and WSGI, h2c and TLS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, Certs, ServerProcess

EXAMPLE = ROOT / "examples" / "grpc"
EXPECTED = """\
Greet: Hello, Ada!
GreetMany: Hello, Ada! (#1)
GreetMany: Hello, Ada! (#2)
GreetMany: Hello, Ada! (#3)
Chat: Hello, Ada 1!
Chat: Hello, Ada 2!
Chat: Hello, Ada 3!
Greet with no name: INVALID_ARGUMENT a name is required
"""


@pytest.mark.parametrize("app", ["asgi_app:app", "wsgi_app:app"])
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_example_service(app: str, tls: bool, certs: Certs) -> None:
    args = ["--app-dir", str(EXAMPLE), app, "-b", "127.0.0.1:0"]
    client = [sys.executable, str(EXAMPLE / "client.py")]
    if tls:
        args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
        client += ["--ca", certs.ca_pem]
    server = ServerProcess(args, cwd=ROOT)
    try:
        server.wait_ready()
        done = subprocess.run(
            [*client, f"localhost:{server.port}", "Ada"], capture_output=True, text=True, timeout=60, cwd="/"
        )
        assert done.returncode == 0, done.stderr + server.output
        assert done.stdout == EXPECTED
    finally:
        assert server.stop() == 0, server.output
    assert "Traceback" not in server.output and "[ERROR]" not in server.output, server.output
