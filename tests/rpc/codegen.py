"""Generate the Python code for a .proto: messages, grpcio stubs and connectrpc apps, in one package.

The test suite generates ``probegen`` from tests/rpc/probe.proto at session
start rather than committing it: generated protobuf code checks the runtime's
version at import and connectrpc's generated code follows its (0.x) runtime,
so code made by the installed grpcio-tools and protoc-gen-connectrpc always
matches the installed runtimes. It takes about a second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate(proto: Path, dest: Path, package: str) -> Path:
    """Write ``dest/package/`` (``<name>_pb2``, ``_pb2_grpc``, ``_connect``) and return ``dest``.

    Raises RuntimeError with protoc's output when generation fails.
    """
    out = dest / package
    out.mkdir(parents=True, exist_ok=True)
    (out / "__init__.py").write_text("")
    plugin = shutil.which("protoc-gen-connectrpc") or str(Path(sys.executable).parent / "protoc-gen-connectrpc")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"--plugin=protoc-gen-connectrpc={plugin}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--connectrpc_out={out}",
            "--connectrpc_opt=protobuf=google",
            proto.name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"protoc failed for {proto}:\n{done.stdout}{done.stderr}")
    # grpcio-tools writes an absolute import of the messages module; make it relative to the package.
    stem = proto.stem
    grpc_file = out / f"{stem}_pb2_grpc.py"
    text = grpc_file.read_text()
    grpc_file.write_text(text.replace(f"import {stem}_pb2 as", f"from . import {stem}_pb2 as"))
    return dest
