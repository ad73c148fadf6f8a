#!/usr/bin/env bash
# Install everything the test suite needs, then run it: ruff, then pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v h2load >/dev/null || need+=(nghttp2-client)
# tests/docs/test_docs_site.py builds the documentation, whose layer diagram is drawn by graphviz.
command -v dot >/dev/null || need+=(graphviz)
# tests/asgi/test_websocket_browser.py (headless Chromium driven by node's playwright-core)
# is skipped without them, so they are installed only when we can.
optional=()
[ -x /usr/bin/chromium ] || optional+=(chromium fonts-dejavu-core)
command -v npm >/dev/null || optional+=(nodejs npm)
# tests/container/test_container.py (podman builds and runs the Dockerfile; root only) needs these.
command -v podman >/dev/null || optional+=(podman)
command -v runc >/dev/null || optional+=(runc)
command -v debootstrap >/dev/null || optional+=(debootstrap)
# tests/config/test_conf_examples.py and tests/ops/test_proxies.py run conf/nginx.conf and conf/haproxy.cfg
# in front of real h2gate processes; tests/ops/test_admission.py sets open-file limits with prlimit.
command -v nginx >/dev/null || optional+=(nginx)
command -v haproxy >/dev/null || optional+=(haproxy)
command -v prlimit >/dev/null || optional+=(util-linux)
# tests/bench/test_instructions.py runs bench/instructions.py, which counts instructions under callgrind.
command -v valgrind >/dev/null || optional+=(valgrind)
# The compiled wheel built below (mypyc: a C compiler and the Python headers).
command -v gcc >/dev/null || need+=(gcc)
python -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
    || need+=(python3-dev)
command -v ss >/dev/null || optional+=(iproute2)
if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    need+=("${optional[@]}")
elif [ ${#optional[@]} -gt 0 ]; then
    echo "tests/run.sh: without ${optional[*]} the browser, container and proxy tests are skipped" >&2
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

# fast: the native codec (ngh2), which the conformance and attack suites run on a second time below
python -m pip install -q -e '.[test,fast]'
export H2GATE_NODE_DIR="${H2GATE_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/h2gate-tests/node}"
# Browser tests: playwright-core drives Chromium; tests/rpc/test_browser.py also bundles connect-web
# (generated message code from protoc-gen-es, bundled by esbuild).
node_packages=(playwright-core@1 @connectrpc/connect@2 @connectrpc/connect-web@2 @bufbuild/protobuf@2
               @bufbuild/protoc-gen-es@2 esbuild)
node_missing=()
for package in "${node_packages[@]}"; do
    [ -d "$H2GATE_NODE_DIR/node_modules/${package%@*}" ] || node_missing+=("$package")
done
if command -v npm >/dev/null && [ ${#node_missing[@]} -gt 0 ]; then
    mkdir -p "$H2GATE_NODE_DIR"
    npm install --prefix "$H2GATE_NODE_DIR" --no-audit --no-fund --silent "${node_packages[@]}" \
        || echo "tests/run.sh: npm install ${node_missing[*]} failed; the browser tests will be skipped" >&2
fi
ruff check h2gate tests examples bench docs build_support setup.py
ruff format --check h2gate tests examples bench docs build_support setup.py
lint-imports  # the layers of shared/ARCHITECTURE.md, and no import cycles (contracts in pyproject.toml)
mypy  # strict on h2gate.protocol, h2gate.http, h2gate.internals (pyproject.toml)
# Servers run the h2 codec (tests/conftest.py); tests/protocol runs the core on both codecs by itself.
H2GATE_CODEC=h2 python -m pytest "$@"
# The same conformance and attack suites against servers on the native codec (issue 22: both codecs in CI).
H2GATE_CODEC=ngh2 python -m pytest "$@" tests/conformance tests/attacks
# The attack suite once more on the asyncio loop, the default users get: there an HTTP request's
# app starts without a trio task of its own, and resets, floods and cuts must still end it.
H2GATE_CODEC=h2 H2GATE_TEST_LOOP=asyncio python -m pytest "$@" tests/attacks

# The compiled wheel, as the platform wheels are built (setup.py with H2GATE_MYPYC=1; cibuildwheel builds the
# manylinux ones in a release job, docs/performance.md): built once for this machine, installed in a directory
# on PYTHONPATH that shadows the editable checkout (python -P: the working directory does not win), then
# the conformance and attack suites against it on both codecs. tests/release/test_build.py fails unless
# the tests and the servers they start import the compiled build; build_support/smoke.py checks it as a
# user would run it. About 11 minutes on 2 cores (3 compiling, 4 per codec; bench/README.md, "CI cost"),
# and a few more for the block after the loop.
compiled="$(mktemp -d "${TMPDIR:-/tmp}/h2gate-compiled.XXXXXX")"
trap 'rm -rf "$compiled"' EXIT
H2GATE_MYPYC=1 python -m pip wheel -q --no-deps -w "$compiled/dist" .
python -m pip install -q --no-deps --target "$compiled/site" "$compiled"/dist/h2gate-*.whl
(cd "$compiled" && PYTHONPATH="$compiled/site" python -P "$OLDPWD/build_support/smoke.py" --expect compiled)
for codec in h2 ngh2; do
    PYTHONPATH="$compiled/site" H2GATE_TEST_BUILD=compiled H2GATE_TEST_WHEEL="$(echo "$compiled"/dist/h2gate-*.whl)" \
        H2GATE_CODEC=$codec python -P -m pytest "$@" tests/release/test_build.py tests/conformance tests/attacks \
        tests/release/test_packaging.py::test_compiled_wheel_holds_extension_modules_and_their_py
done
# Beyond the protocol, once (they do not depend on the codec): the end-to-end tests of the other compiled
# layers, where mypyc's differences from CPython showed up (bench/README.md, "Round six: what the compiled
# build did differently"): log files written twice, a segfault from weak references, lost exception causes.
# Unit tests that hand compiled code stand-in objects are left to the pure run: compiled code checks types.
PYTHONPATH="$compiled/site" H2GATE_TEST_BUILD=compiled H2GATE_CODEC=h2 python -P -m pytest "$@" \
    tests/release/test_build.py tests/release/test_weakrefs.py tests/observe/test_logsink.py tests/tls \
    tests/asgi/test_faults.py tests/wsgi tests/rpc
