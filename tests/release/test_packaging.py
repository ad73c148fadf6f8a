"""The sdist and the wheel: metadata twine accepts, no top-level ``examples`` package, an sdist whose tests
run, and the wheel installed in a fresh virtual environment serving from a directory with its own
``examples/`` package (which the wheel must neither shadow nor be shadowed by).

The builds are made once per session (``python -m build``, in its usual isolated environment).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ServerProcess, h2c_client

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("h2gate-*.whl")
    (sdist,) = out.glob("h2gate-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_wheel_contents_and_metadata(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(whl.read(metadata_name).decode())
    top = {name.split("/")[0] for name in names}
    assert top == {"h2gate", metadata_name.split("/")[0]}, top  # no top-level examples (or tests) package
    assert "h2gate/py.typed" in names and "h2gate/examples/hello.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Topic :: Internet :: WWW/HTTP :: HTTP Servers" in classifiers
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL")} >= {"Homepage", "Documentation", "Source"}
    requires = {Requirement(r).name: Requirement(r) for r in metadata.get_all("Requires-Dist") if "extra" not in r}
    assert {"h2", "trio", "pyOpenSSL", "click"} <= set(requires)
    # The pure-Python fallback: any platform, no compiled module (the compiled wheels need H2GATE_MYPYC=1).
    assert dist["wheel"].name.endswith("-py3-none-any.whl"), dist["wheel"].name
    assert [n for n in names if n.endswith((".so", ".pyd", ".c"))] == []


def _compiled_modules() -> list[str]:
    sys.path.insert(0, str(ROOT / "build_support"))
    try:
        from mypyc_modules import chosen
    finally:
        sys.path.remove(str(ROOT / "build_support"))
    return chosen(ROOT)


@pytest.mark.skipif(
    not os.environ.get("H2GATE_TEST_WHEEL"),
    reason="the compiled wheel takes minutes to build: tests/run.sh builds it once and names it in H2GATE_TEST_WHEEL",
)
def test_compiled_wheel_holds_extension_modules_and_their_py() -> None:
    wheel = Path(os.environ["H2GATE_TEST_WHEEL"])
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.endswith(f"-{here}-{here}-linux_{platform.machine()}.whl"), wheel.name  # this platform's
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (wheel_file,) = [n for n in names if n.endswith(".dist-info/WHEEL")]
        wheel_meta = Parser().parsestr(whl.read(wheel_file).decode())
    assert wheel_meta["Root-Is-Purelib"] == "false"
    tags = wheel_meta.get_all("Tag")
    assert tags and all(t.startswith("cp3") and "-none-any" not in t for t in tags), tags
    compiled = _compiled_modules()
    assert "h2gate/protocol/core.py" in compiled
    for path in compiled:
        stem = path.removesuffix(".py")
        assert path in names, f"{path}: the .py fallback is missing"
        assert any(n.startswith(stem + ".") and n.endswith(".so") for n in names), f"{path}: no extension module"
    # One shared library holds the compiled code, inside the package (the shims import it by name).
    assert [n for n in names if "__mypyc" in n and n.endswith(".so")] == [
        n for n in names if n.startswith("h2gate/_compiled__mypyc.")
    ], names
    assert {n.split("/")[0] for n in names} == {"h2gate", wheel_file.split("/")[0]}
    assert not [n for n in names if n.endswith(".c")]  # no generated C sources


def test_trio_bound_is_the_newest_tested() -> None:
    # The suite runs against the newest trio the bound allows; raise the bound only with a run against the next.
    (spec,) = [
        d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] if "trio" in d
    ]
    requirement = Requirement(spec.split("#")[0])
    upper = [s for s in requirement.specifier if s.operator == "<"]
    assert upper, "trio needs an upper bound (it is 0.x: minor releases may break)"
    installed = Version(importlib.metadata.version("trio"))
    assert installed in requirement.specifier
    bound = Version(upper[0].version)
    assert (installed.major, installed.minor + 1) == (bound.major, bound.minor), (installed, bound)


def test_sdist_holds_the_tests_and_they_run(dist: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (tree,) = tmp_path.iterdir()
    tracked = subprocess.run(
        ["git", "ls-files", "tests", "conf", "bench", "docs", "LICENSE", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    missing = [name for name in tracked if not (tree / name).exists() and (ROOT / name).exists()]
    assert missing == []
    # What builds the wheels from the sdist (the pure one here; the compiled one with H2GATE_MYPYC=1).
    for name in ("setup.py", "build_support/h2gate_backend.py", "build_support/mypyc_modules.py"):
        assert (tree / name).is_file(), name
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    which = subprocess.run(
        [sys.executable, "-c", "import h2gate; print(h2gate.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    assert which.stdout.strip() == str(tree / "h2gate" / "__init__.py")  # the sdist's own code is under test
    suite = ["tests/config/test_config.py", "tests/docs/test_docs.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suite],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


MINE = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"my own examples package"})
"""


def test_wheel_in_a_fresh_venv_beside_a_users_examples_package(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(dist["wheel"])], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stdout + install.stderr
    project = tmp_path / "project"
    (project / "examples").mkdir(parents=True)
    (project / "examples" / "__init__.py").write_text("")
    (project / "examples" / "mine.py").write_text(MINE)
    h2gate = [str(venv / "bin" / "h2gate")]
    for app, expected in (
        ("examples.mine:app", "my own examples package"),
        ("h2gate.examples.hello:app", "Hello from h2gate over HTTP/2!"),  # the README's first command
    ):
        server = ServerProcess([app, "-b", "127.0.0.1:0"], cwd=project, command=h2gate).wait_ready()
        try:
            with h2c_client() as client:
                assert client.get(server.url + "/").text.startswith(expected)
        finally:
            assert server.stop() == 0
    demo = ServerProcess(["--demo", "-b", "127.0.0.1:0", "--self-signed"], cwd=project, command=h2gate).wait_ready()
    try:
        with httpx.Client(http2=True, verify=False) as client:
            assert client.get(demo.url + "/").http_version == "HTTP/2"
    finally:
        assert demo.stop() == 0
