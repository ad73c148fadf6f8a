"""A real browser's WebSockets: headless Chromium driven by Playwright (node).

Two facts about Chromium this checks end to end (NOTES: it uses RFC 8441 only
over an HTTP/2 connection it already has to the origin; otherwise it opens a
new connection offering ALPN ``http/1.1`` only):

* a page served over h2 opening ``wss://`` to its own origin gets its
  WebSocket over that HTTP/2 connection (extended CONNECT);
* a page from another origin (a second bound port) opening a *cold*
  WebSocket to the first port gets it over HTTP/1.1, which h2gate serves.

Needs ``/usr/bin/chromium`` (or ``$H2GATE_CHROMIUM``) and node with
``playwright-core`` installed under ``$H2GATE_NODE_DIR`` (default
``~/.cache/h2gate-tests/node``); ``tests/run.sh`` installs both. The test is
skipped, with the reason, when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Certs, ServerProcess

CHROMIUM = os.environ.get("H2GATE_CHROMIUM", "/usr/bin/chromium")
NODE_DIR = Path(os.environ.get("H2GATE_NODE_DIR", Path.home() / ".cache" / "h2gate-tests" / "node"))

SCRIPT = r"""
const { chromium } = require("playwright-core");
(async () => {
  const [executablePath, ...urls] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--ignore-certificate-errors"],
  });
  const out = [];
  try {
    for (const url of urls) {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });  // no shared connections
      const page = await context.newPage();
      await page.goto(url);
      out.push(await page.evaluate(() => window.result));
      await context.close();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"chromium not found at {CHROMIUM} (tests/run.sh installs it: apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed in {NODE_DIR} (tests/run.sh installs it with npm)"
    return None


@pytest.mark.timeout(60)
def test_chromium_websockets_over_h2_and_cold_http11(certs: Certs, tmp_path: Path) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    server = ServerProcess(
        [
            "apps.ws:app",
            "--certfile",
            certs.cert_pem,
            "--keyfile",
            certs.key_pem,
            "-b",
            "127.0.0.1:0",
            "-b",
            "127.0.0.1:0",
        ]
    ).wait_ready(count=2)
    try:
        first, second = (int(url.rsplit(":", 1)[1]) for url in server.urls[:2])
        script = tmp_path / "ws.js"
        script.write_text(SCRIPT)
        same_origin = f"https://localhost:{first}/page"
        cross_origin = f"https://localhost:{second}/page?ws={first}"
        done = subprocess.run(
            ["node", str(script), CHROMIUM, same_origin, cross_origin],
            env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules"), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=50,
        )
        assert done.returncode == 0, done.stderr + "\n" + server.output
        same, cross = json.loads(done.stdout.strip().splitlines()[-1])
        # Same origin: the page came over h2 and the WebSocket rode on that connection (RFC 8441).
        assert same == {"got": ["hello"], "code": 1000, "protocol": "h2"}, server.output
        server.wait_for_log(r'"WEBSOCKET /echo HTTP/2" 200 close=1000')
        # Another origin's page (itself over h2): the cold WebSocket came over HTTP/1.1.
        assert cross == {"got": ["hello"], "code": 1000, "protocol": "h2"}, server.output
        server.wait_for_log(r'"WEBSOCKET /echo HTTP/1.1" 101 close=1000')
    finally:
        server.stop(signal.SIGKILL)
