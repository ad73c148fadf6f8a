"""An app that does not import: one line naming the error, the app's own frames, once, however many workers.

A single process (-w 1) imports the app itself; with a supervisor (-w 2, or -w 1 --supervise) each worker
reports why it could not start and the supervisor says it once, then exits 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROCESS_MODELS = {"w1": ["-w", "1"], "w1-supervised": ["-w", "1", "--supervise"], "w2": ["-w", "2"]}


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2GATE_")}
    return subprocess.run(
        [sys.executable, "-m", "h2gate", *args, "-b", "127.0.0.1:0"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("apps")
    (d / "broken.py").write_text("def app(scope, receive, send)\n    pass\n")  # a SyntaxError
    (d / "uses_helper.py").write_text("import json\nimport helper\n\napp = helper.app\n")
    (d / "helper.py").write_text("x = 1\nimport h2gate_test_not_installed  # noqa\n")
    (d / "calls_library.py").write_text('import json\n\nsettings = json.loads("{")\n')
    return d


@pytest.mark.parametrize("model", PROCESS_MODELS)
def test_syntax_error_is_one_line(apps: Path, model: str) -> None:
    result = run(apps, "broken:app", *PROCESS_MODELS[model])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["h2gate: error: cannot import 'broken': SyntaxError: expected ':' (broken.py, line 1)"]
    assert "Traceback" not in result.stderr and "File " not in result.stderr
    assert result.stderr.endswith(errors[0] + "\n")  # the last word: nothing after it


@pytest.mark.parametrize("model", PROCESS_MODELS)
def test_missing_dependency_shows_the_apps_frames_once(apps: Path, model: str) -> None:
    result = run(apps, "uses_helper:app", *PROCESS_MODELS[model])
    assert result.returncode == 1
    tail = result.stderr[result.stderr.index("h2gate: error:") :].splitlines()
    tail = [line for line in tail if line.strip(" ^~")]  # Python's column markers, where it prints them
    assert tail == [
        "h2gate: error: cannot import 'uses_helper': ModuleNotFoundError: No module named 'h2gate_test_not_installed'",
        f'  File "{apps}/uses_helper.py", line 2, in <module>',
        "    import helper",
        f'  File "{apps}/helper.py", line 2, in <module>',
        "    import h2gate_test_not_installed  # noqa",
    ]
    assert result.stderr.count("h2gate_test_not_installed'") == 1
    assert "Traceback" not in result.stderr and "importlib" not in result.stderr and "click" not in result.stderr


def test_error_inside_a_library_shows_the_apps_line(apps: Path) -> None:
    result = run(apps, "calls_library:app", "-w", "2")
    assert result.returncode == 1
    tail = result.stderr[result.stderr.index("h2gate: error:") :].splitlines()
    tail = [line for line in tail if line.strip(" ^~")]
    assert tail[0].startswith("h2gate: error: cannot import 'calls_library': JSONDecodeError: Expecting property")
    assert tail[1:] == [f'  File "{apps}/calls_library.py", line 3, in <module>', '    settings = json.loads("{")']


def test_stderr_stays_short_with_workers(apps: Path) -> None:
    # With two workers: the supervisor's start and stop lines, and the error; no line per worker.
    result = run(apps, "broken:app", "-w", "2")
    assert len(result.stderr.splitlines()) <= 4, result.stderr
    assert "worker" not in result.stderr.split("h2gate: error:")[1]
