"""Draw docs/_static/metrics.svg: a dashboard-style view of h2gate's Prometheus metrics under a short load.

It starts h2gate on loopback with ``--metrics-bind``, drives three rounds of load (1, 4 and 16 clients
sending requests in a loop, each round a few seconds, every loop bounded), samples ``/metrics`` twice a
second and draws four panels as a self-contained SVG. Run it again to refresh the picture:

    python docs/metrics_view.py            # needs h2gate[metrics] and httpx[http2]
"""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

OUT = Path(__file__).resolve().parent / "_static" / "metrics.svg"
ROUNDS = (1, 4, 16)  # concurrent clients per round
ROUND_SECONDS = 4.0
SAMPLE = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        m = re.match(r"^(h2gate_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            values[m.group(1)] = values.get(m.group(1), 0.0) + float(m.group(3))
    return values


def load(url: str, clients: int, until: float) -> None:
    def one() -> None:
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            for _ in range(100_000):  # bounded; the deadline ends it first
                if time.monotonic() >= until:
                    return
                client.get(url)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure() -> list[tuple[float, dict[str, float]]]:
    port, mport = free_port(), free_port()
    args = ["h2gate.examples.hello:app", "-b", f"127.0.0.1:{port}", "--metrics-bind", f"127.0.0.1:{mport}"]
    server = subprocess.Popen([sys.executable, "-m", "h2gate", *args, "--no-access-log"], stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if b"listening on" in line:
                break
        samples: list[tuple[float, dict[str, float]]] = []
        start = time.monotonic()
        done = threading.Event()

        def sampler() -> None:
            while not done.is_set():
                samples.append((time.monotonic() - start, scrape(f"http://127.0.0.1:{mport}/metrics")))
                done.wait(SAMPLE)

        watcher = threading.Thread(target=sampler)
        watcher.start()
        time.sleep(1)
        for clients in ROUNDS:
            load(f"http://127.0.0.1:{port}/", clients, time.monotonic() + ROUND_SECONDS)
            time.sleep(1)
        done.set()
        watcher.join()
        return samples
    finally:
        server.terminate()
        server.wait(30)


def series(samples: list[tuple[float, dict[str, float]]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {"requests/s": [], "open streams": [], "ms per request": []}
    out["connections open"] = []
    for (t0, a), (t1, b) in itertools.pairwise(samples):
        dt = t1 - t0
        done = b.get("h2gate_requests_total", 0) - a.get("h2gate_requests_total", 0)
        spent = b.get("h2gate_request_duration_seconds_sum", 0) - a.get("h2gate_request_duration_seconds_sum", 0)
        out["requests/s"].append((t1, done / dt))
        out["open streams"].append((t1, b.get("h2gate_streams_open", 0)))
        out["ms per request"].append((t1, 1000 * spent / done if done else 0.0))
        out["connections open"].append((t1, b.get("h2gate_connections_open", 0)))
    return out


def svg(panels: dict[str, list[tuple[float, float]]]) -> str:
    w, h, pad = 460, 200, 36
    colors = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w + 30}" height="{2 * h + 30}" font-family="sans-serif">'
    ]
    parts.append(f'<rect width="{2 * w + 30}" height="{2 * h + 30}" fill="#111217"/>')
    for i, (title, points) in enumerate(panels.items()):
        x0, y0 = 10 + (i % 2) * (w + 10), 10 + (i // 2) * (h + 10)
        parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" rx="4" fill="#181b1f" stroke="#2c3235"/>')
        parts.append(f'<text x="{x0 + 10}" y="{y0 + 20}" fill="#ccccdc" font-size="13">h2gate: {title}</text>')
        if not points:
            continue
        tmax = max(t for t, _ in points) or 1
        vmax = max(v for _, v in points) * 1.1 or 1
        for k in range(4):
            gy = y0 + h - pad + (k / 3) * -(h - 2 * pad)
            label = f"{vmax * k / 3:.0f}" if vmax >= 10 else f"{vmax * k / 3:.1f}"
            parts.append(f'<line x1="{x0 + pad}" y1="{gy:.1f}" x2="{x0 + w - 10}" y2="{gy:.1f}" stroke="#2c3235"/>')
            parts.append(f'<text x="{x0 + 4}" y="{gy + 4:.1f}" fill="#8e8e8e" font-size="10">{label}</text>')
        xy = [(x0 + pad + (t / tmax) * (w - pad - 10), y0 + h - pad - (v / vmax) * (h - 2 * pad)) for t, v in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colors[i]}" stroke-width="2"/>')
        parts.append(f'<text x="{x0 + w - 60}" y="{y0 + h - 12}" fill="#8e8e8e" font-size="10">{tmax:.0f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(svg(series(measure())))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
