#!/usr/bin/env bash
# Install everything the test suite needs, then run it: ruff, then pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v h2load >/dev/null || need+=(nghttp2-client)
# tests/test_websocket_browser.py (headless Chromium driven by node's playwright-core)
# is skipped without them, so they are installed only when we can.
optional=()
[ -x /usr/bin/chromium ] || optional+=(chromium fonts-dejavu-core)
command -v npm >/dev/null || optional+=(nodejs npm)
# tests/test_container.py (podman builds and runs the Dockerfile; root only) needs these.
command -v podman >/dev/null || optional+=(podman)
command -v runc >/dev/null || optional+=(runc)
command -v debootstrap >/dev/null || optional+=(debootstrap)
# tests/test_conf_examples.py runs conf/nginx.conf in front of h2gate when nginx is there.
command -v nginx >/dev/null || optional+=(nginx)
if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    need+=("${optional[@]}")
elif [ ${#optional[@]} -gt 0 ]; then
    echo "tests/run.sh: without ${optional[*]} the browser, container and nginx tests are skipped" >&2
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "tests/run.sh: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

python -m pip install -q -e '.[test]'
export H2GATE_NODE_DIR="${H2GATE_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/h2gate-tests/node}"
if command -v npm >/dev/null && [ ! -d "$H2GATE_NODE_DIR/node_modules/playwright-core" ]; then
    mkdir -p "$H2GATE_NODE_DIR"
    npm install --prefix "$H2GATE_NODE_DIR" --no-audit --no-fund --silent playwright-core@1 \
        || echo "tests/run.sh: npm install playwright-core failed; the browser test will be skipped" >&2
fi
ruff check h2gate tests examples bench
ruff format --check h2gate tests examples bench
lint-imports  # the layers of shared/ARCHITECTURE.md, and no import cycles (contracts in pyproject.toml)
mypy  # strict on h2gate.protocol, h2gate.http, h2gate.internals (pyproject.toml)
python -m pytest "$@"
