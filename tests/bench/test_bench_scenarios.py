"""Smoke runs of the bench scenario scripts with tiny counts: they start, measure and print figures.

Only the harness is checked (servers start, every request is answered, each
figure line is printed); the figures themselves are never compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")


def run_script(*args: str, timeout: float = 90) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_scenarios_script_prints_each_figure() -> None:
    out = run_script(
        "bench/scenarios.py", "--quick", "--servers", "h2gate-trio", "--downloads", "4", "--rounds", "2",
        "--connections", "10", "--requests", "200", "--duration", "30",
    )  # fmt: skip
    lines = out.splitlines()
    assert "failed" not in out
    download = next(line for line in lines if line.strip().startswith("h2gate-trio") and "MB/s" in line)
    runs = download.partition("(runs: ")[2].rstrip(")").split(", ")
    assert len(runs) == 2 and all(float(run) > 0 for run in runs), download
    connections = next(line for line in lines if "req/s" in line and "p99" in line)
    assert "failures 0" in connections and "(200 logged)" in connections
    assert sum("failures 0" in line and line.strip().startswith("h2gate -w") for line in lines) == 2
    if shutil.which("nghttpd"):
        assert any(line.strip().startswith("nghttpd") and "MB/s" in line for line in lines)
        assert "% of nghttpd" in out


def test_idle_memory_script_holds_the_connections() -> None:
    out = run_script("bench/idle_memory.py", "--connections", "5", "--servers", "h2gate-trio", "--settle", "0.2")
    assert "KiB per idle TLS connection" in out and "5 open, 0 failed" in out


def test_idle_memory_script_reads_a_large_response_whole() -> None:
    out = run_script(
        "bench/idle_memory.py", "--connections", "2", "--servers", "h2gate-trio", "--settle", "0.2",
        "--path", "/download",
    )  # fmt: skip
    assert "after GET /download" in out and "2 open, 0 failed" in out


def test_idle_trace_script_groups_the_heap_by_file() -> None:
    out = run_script("bench/idle_trace.py", "--connections", "5", "--settle", "0.2", "--top", "40")
    assert "Python heap +" in out and "h2gate/protocol/" in out


def test_floods_script_reports_each_flood() -> None:
    out = run_script("bench/floods.py", "--servers", "h2gate-trio", "--quiet", "0.3", "--seconds", "8", timeout=150)
    for kind in ("priority", "window_update", "ping", "settings", "rapid_reset"):
        lines = out.split(f"-- {kind}", 1)[1].splitlines()
        flood = next(line for line in lines if line.strip().startswith("flood:"))
        if kind in ("priority", "window_update", "rapid_reset"):  # per-second budgets: always broken by 0.3 s
            assert "GOAWAY ENHANCE_YOUR_CALM" in flood, out
        # PING / SETTINGS: refused only when replies pile up faster than the writer takes them (timing)
        assert " sent in " in flood, out
        during = next(line for line in lines if "during the flood" in line)
        assert "p50" in during and "failed" not in during, out


def test_fairness_script_runs_all_modes() -> None:
    out = run_script("bench/fairness.py", "--mb", "10", "--small", "10", "--servers", "h2gate-trio", "--limit", "30")
    for mode in ("alone", "download", "priority"):
        line = next(line for line in out.splitlines() if line.split()[:2] == ["h2gate-trio", mode])
        assert "small p50" in line and "failed" not in line


def test_cpu_script_prints_a_median_per_server() -> None:
    out = run_script(
        "bench/cpu.py", "--servers", "h2gate-trio,h2gate-asyncio", "--rounds", "2",
        "--requests", "300", "--warmup", "50", "--duration", "30",
    )  # fmt: skip
    lines = out.splitlines()
    assert sum(line.strip().startswith("round ") and line.endswith(" us") for line in lines) == 4
    medians = [line.split() for line in lines[lines.index("median:") + 1 :]]
    assert [m[0] for m in medians] == ["h2gate-trio", "h2gate-asyncio"]
    assert all(float(m[1]) > 0 and m[2:5] == ["us", "per", "request"] for m in medians)


def test_run_script_takes_turns_and_prints_the_median_run() -> None:
    out = run_script(
        "bench/run.py", "--quick", "--servers", "h2gate-trio,h2gate-wsgi", "--requests", "300",
        "--downloads", "2", "--rounds", "2", "--floor-iterations", "200",
    )  # fmt: skip
    assert out.count("== round ") == 2 and "median of 2 bench rounds" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("h2gate-")}
    per_round = out.partition("req/s per round")[2].splitlines()
    for name in ("h2gate-trio", "h2gate-wsgi"):
        row = rows[name]
        assert row[-1] == "0", row  # failures
        figures = next(line for line in per_round if line.split()[:1] == [name]).split(maxsplit=1)[1]
        runs = [float(f.replace(",", "")) for f in figures.split(", ")]
        assert len(runs) == 2 and all(run > 0 for run in runs)
        assert float(row[2].replace(",", "")) == min(runs)  # the lower middle of two


def test_codecs_script_checks_answers_and_prints_medians() -> None:
    """h2 and h2 as h2gate drives it are always installed; the native codecs are skipped with a reason if not."""
    out = run_script("bench/codecs.py", "--rounds", "2", "--requests", "40", "--codecs", "h2,h2+h2gate,ngh2")
    assert "h2         " in out and "answers correctly" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("h2 ", "h2+h2gate "))}
    for name in ("h2", "h2+h2gate"):
        fresh, open_, batch = (float(v) for v in rows[name][1:4])
        assert fresh > 0 and open_ > 0 and batch > 0
    assert "ngh2" in out  # timed, or skipped with its reason


def test_codec_probes_name_what_h2_enforces() -> None:
    out = run_script("bench/codecs.py", "--probes", "--codecs", "h2")
    assert "CONTINUATION flood" in out and "raised ProtocolError: Too many continuation frames" in out
    assert "8.2.1 uppercase name" in out and "GOAWAY 1" in out


def test_h2load_output_without_h2_is_no_figure() -> None:
    from bench.servers import parse_h2load

    text = (
        "finished in 1.00s, 100.00 req/s, 1KB/s\n"
        "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout\n"
        "status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx\n"
    )
    assert not parse_h2load(text).ok  # no "Application protocol" line: not shown as an h2 figure
    assert not parse_h2load("Application protocol: http/1.1\n" + text).ok
    assert parse_h2load("Application protocol: h2\n" + text).ok


def test_ab_script_loads_two_servers_at_once() -> None:
    out = run_script(
        "bench/ab.py", "--servers", "h2gate-trio,h2gate-asyncio", "--rounds", "2", "-n", "300", "--warmup", "50"
    )  # fmt: skip
    assert out.count("  round ") == 2 and "no figure" not in out
    assert "median ratio" in out and "median h2gate-trio:" in out and "median h2gate-asyncio:" in out


def test_ab_script_runs_one_side_from_another_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(Path(__file__).resolve().parents[2] / "h2gate", tree / "h2gate")
    args = ("--rounds", "1", "-n", "300", "--warmup", "50")
    out = run_script("bench/ab.py", "--servers", "h2gate-trio,h2gate-trio", "--tree-a", str(tree), *args)
    assert out.count("  round ") == 1 and "no figure" not in out
    assert "median A:h2gate-trio:" in out and "median h2gate-trio:" in out
    # The A side imports the tree's package, not this checkout's (which the servers start in): break the copy.
    init = tree / "h2gate" / "__init__.py"
    init.write_text(init.read_text() + "\nraise SystemExit('the copy in the tree was imported')\n")
    out = run_script("bench/ab.py", "--servers", "h2gate-trio,h2gate-trio", "--tree-a", str(tree), *args)
    assert "no figure: A:h2gate-trio did not start" in out


def _python_with(tree: Path, tmp_path: Path) -> Path:
    """A "python" whose h2gate is the copy in ``tree`` (as a venv's python has its installed h2gate)."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={tree} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_run_script_serves_h2gate_rows_from_another_python(tmp_path: Path) -> None:
    tree = tmp_path / "installed"
    shutil.copytree(ROOT / "h2gate", tree / "h2gate")
    python = _python_with(tree, tmp_path)
    args = ("--servers", "h2gate-asyncio-log", "--rounds", "1", "-n", "300", "--downloads", "1", "--warmup", "50")
    out = run_script("bench/run.py", *args, "--h2gate-python", str(python), "--floor-iterations", "50")
    assert f"h2gate 0.1.0 ({__import__('h2gate').build()}) serving ASGI app bench.app:app" in out
    assert "0.1.0 pure" in out and "300 requests" in out
    # The server imports that Python's h2gate, not this checkout's: break the copy and the row cannot start.
    init = tree / "h2gate" / "__init__.py"
    init.write_text(init.read_text() + "\nraise SystemExit('the installed copy was imported')\n")
    done = subprocess.run(
        [sys.executable, "bench/ab.py", "--servers", "h2gate-trio,h2gate-trio", "--python-a", str(python)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot import h2gate" in done.stderr, done.stdout + done.stderr


def test_another_python_that_imports_this_checkout_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "bench/ab.py", "--servers", "h2gate-trio,h2gate-trio", "--python-b", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "imports h2gate from this checkout" in done.stderr, done.stdout + done.stderr
