"""The documentation site: it builds with warnings as errors, and its code examples do what the pages say.

Getting started is followed as written: its two app files are taken from the page, its certificate
command is run, each app is served with the page's flags, and the answer is the one the page prints.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\{code-block\} )?(\w+)\n(:caption: ([^\n]+)\n\n)?(.*?)^```$", re.M | re.S)


def code_blocks(page: Path, language: str = "python") -> list[tuple[str | None, str]]:
    """(caption, code) of each fenced block in ``language``, plain or MyST code-block."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(4), m.group(5)) for m in FENCE.finditer(text) if m.group(2) == language]


def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="pip install '.[docs]' (tests/run.sh does)")
    if shutil.which("dot") is None:
        pytest.fail("graphviz's dot is needed for the layer diagram: apt-get install graphviz (tests/run.sh does)")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index", "getting-started", "reference/options", "coming-from", "architecture", "grpc"):
        assert (tmp_path / f"{page}.html").exists(), page
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="getting-started.html"' in index and 'href="grpc.html"' in index
    assert "<svg" in (tmp_path / "architecture.html").read_text(encoding="utf-8") or list(
        (tmp_path / "_images").glob("graphviz-*.svg")
    )
    options = (tmp_path / "reference" / "options.html").read_text(encoding="utf-8")
    assert "H2GATE_MAX_CONCURRENT_STREAMS" in options and "Limits and timeouts" in options


def test_every_python_example_parses() -> None:
    pages = [*DOCS.glob("**/*.md"), ROOT / "README.md"]
    blocks = [(page, caption, code) for page in pages for caption, code in code_blocks(page)]
    assert len(blocks) >= 8
    for page, caption, code in blocks:
        try:
            ast.parse(code)
        except SyntaxError as exc:
            pytest.fail(f"{page.name} ({caption or 'a python block'}): {exc}")


def test_testing_examples_pass_under_pytest(tmp_path: Path) -> None:
    (_caption, testing_example), *_ = code_blocks(DOCS / "testing.md")
    assert "h2gate_server" in testing_example
    (tmp_path / "test_from_testing_page.py").write_text(testing_example)
    fastapi = dict(code_blocks(DOCS / "fastapi.md"))
    (tmp_path / "test_main.py").write_text(fastapi["test_main.py"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_getting_started_serves_over_tls_as_written(framework: str, tmp_path: Path) -> None:
    page = DOCS / "getting-started.md"
    text = page.read_text(encoding="utf-8")
    files = dict(code_blocks(page))
    name = f"hello_{framework}.py"
    (tmp_path / name).write_text(files[name])
    assert "python -m trustme\n" in text
    subprocess.run([sys.executable, "-m", "trustme", "-q"], cwd=tmp_path, check=True, timeout=60)
    command = f"h2gate hello_{framework}:app --certfile server.pem --keyfile server.key"
    assert f"\n{command}\n" in text
    args = command.split()[1:]
    server = ServerProcess([*args, "-b", "127.0.0.1:0"], cwd=tmp_path).wait_ready()
    try:
        assert "curl --cacert client.pem https://localhost:8000/" in text
        url = server.url.replace("127.0.0.1", "localhost")
        with httpx.Client(http2=True, verify=str(tmp_path / "client.pem")) as client:
            response = client.get(url + "/")
        assert response.http_version == "HTTP/2"
        promised = re.search(r"The answer is `(\{[^`]*\"framework\":\"" + framework + r"\"[^`]*\})`", text)
        assert promised is not None
        assert response.json() == json.loads(promised.group(1))
        assert ("WSGI" if framework == "flask" else "ASGI") in server.output
    finally:
        assert server.stop() == 0
