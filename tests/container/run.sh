#!/usr/bin/env bash
# Build the h2gate image with podman from ./Dockerfile and check it in a real
# container: it serves HTTP/2 on a published loopback port, runs as the
# unprivileged user with h2gate as PID 1, passes its HEALTHCHECK, and on
# SIGTERM (podman stop) finishes an in-flight request, logs its graceful
# shutdown and exits 0 before podman's kill timeout.
#
# What it takes on a machine with no Docker engine and no registry access:
#   - rootful podman with runc (crun fails under hybrid cgroups) and capped
#     ulimits (raising them needs CAP_SYS_RESOURCE, which a sandbox may lack):
#     a containers.conf in the cache directory, named by CONTAINERS_CONF;
#   - a local stand-in for python:3.11-slim: Debian bookworm (python3.11 +
#     venv) made once with debootstrap, trimmed, `podman import`ed and kept;
#   - the Python wheels the image needs, fetched on the host (whose pip knows
#     the package index and its proxy) and handed to the offline build as a
#     read-only volume plus a pip.conf; refetched only when pyproject changes.
#
# Usage: bash tests/container/run.sh
# Env: H2GATE_CONTAINER_CACHE (cache dir), H2GATE_DEBIAN_MIRROR, H2GATE_CONTAINER_GRACE
# (seconds podman stop waits before SIGKILL; default 10, as podman/docker).
# Exit status: 0 passed, 1 failed, 77 cannot run here (the reason is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."

GRACE=${H2GATE_CONTAINER_GRACE:-10}
CACHE=${H2GATE_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/h2gate-tests/container}
MIRROR=${H2GATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
BASE=localhost/h2gate-test-base:bookworm
IMAGE=localhost/h2gate-test:latest
NAME=h2gate-test-$$
WORK=$(mktemp -d)

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }
cleanup() {
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || skip "needs root: rootful podman (rootless podman needs subuid/subgid ranges, not set up here)"
for tool in podman runc curl; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install podman buildah runc curl)"
done
[ "$("$PYTHON" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ] \
    || skip "the host's $PYTHON is not 3.11: the wheels it fetches must match the image's python3.11"

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 900 9 || fail "another container test holds $CACHE/lock"

hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -gt 20000 ] && hard_nofile=20000
cat >"$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$CACHE/containers.conf"
# Containers left by an earlier run that was killed before its trap ran.
podman ps -a -q --filter name='^h2gate-test-[0-9]+$' --filter status=exited | xargs -r podman rm >/dev/null 2>&1 || true

# 1. The base image, made once and kept in podman's storage.
if ! podman image exists "$BASE"; then
    command -v debootstrap >/dev/null || skip "no $BASE image and debootstrap is not installed to make one"
    step "making $BASE with debootstrap from $MIRROR (once)"
    rootfs="$WORK/rootfs"
    if ! debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -5 "$CACHE/debootstrap.log" >&2
        skip "debootstrap could not build Debian bookworm from $MIRROR (see $CACHE/debootstrap.log)"
    fi
    # What python:3.11-slim also leaves out: package caches, docs, manuals, translations.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
    tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
fi

# 2. Wheels for an offline build, keyed by pyproject.toml.
stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$CACHE/wheels/.stamp" 2>/dev/null)" != "$stamp" ]; then
    step "fetching wheels for the image"
    rm -rf "$CACHE/wheels"
    if ! "$PYTHON" -m pip wheel -q --wheel-dir "$CACHE/wheels" . 'setuptools>=77' wheel >"$WORK/pip.log" 2>&1; then
        tail -5 "$WORK/pip.log" >&2
        skip "pip could not fetch the wheels the image needs (no package index?)"
    fi
    rm -f "$CACHE"/wheels/h2gate-*.whl  # the image builds h2gate from the sources
    echo "$stamp" >"$CACHE/wheels/.stamp"
fi
printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$CACHE/pip.conf"

# 3. Build. --format docker: OCI image configs have no HEALTHCHECK.
step "building $IMAGE"
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if ! podman build --format docker --pull=never --network=none --layers=false \
    --build-arg PYTHON_IMAGE="$BASE" \
    -v "$CACHE/wheels:/wheels:ro" -v "$CACHE/pip.conf:/etc/pip.conf:ro" \
    -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log" >&2
    fail "podman build failed"
fi
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
[ -z "$old_id" ] || [ "$old_id" = "$new_id" ] || podman rmi "$old_id" >/dev/null 2>&1 || true
config=$(podman image inspect --format '{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Healthcheck.Test}}' "$IMAGE")
step "image: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), $config"
case "$config" in
    "10001:10001 SIGTERM "*h2gate.healthcheck*) ;;
    *) fail "image config: want user 10001:10001, STOPSIGNAL SIGTERM and the h2gate healthcheck, got: $config" ;;
esac

# 4. Run it on a free loopback port.
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/"
step "starting $NAME on $url"
# Locked down as conf/kubernetes.yaml runs it: read-only root, no capabilities, no setuid gains.
podman run -d --name "$NAME" -p "127.0.0.1:$port:8000" --read-only --cap-drop=ALL \
    --security-opt=no-new-privileges "$IMAGE" >/dev/null 2>"$WORK/run.err" \
    || { cat "$WORK/run.err" >&2; fail "podman run failed"; }
answer=""
for _ in $(seq 60); do
    answer=$(curl -s --max-time 2 --http2-prior-knowledge -o "$WORK/body" -w '%{http_version} %{http_code}' "$url" || true)
    [ "$answer" = "2 200" ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
    sleep 0.5
done
[ "$answer" = "2 200" ] || { podman logs "$NAME" >&2; fail "no HTTP/2 200 from $url (got '$answer')"; }
grep -q "Hello from h2gate over HTTP/2" "$WORK/body" || fail "unexpected body: $(head -c 200 "$WORK/body")"
answer=$(curl -s --max-time 5 --http1.1 -o /dev/null -w '%{http_code}' "$url" || true)
[ "$answer" = 505 ] || fail "HTTP/1.1 should get 505 from the container, got '$answer'"
who=$(podman exec "$NAME" sh -c 'id -u; tr "\0" " " </proc/1/cmdline')
case "$who" in
    10001*"/opt/h2gate/bin/h2gate"*) ;;
    *) fail "want uid 10001 and h2gate as PID 1, got: $who" ;;
esac
step "serving HTTP/2 as uid 10001, h2gate is PID 1, HTTP/1.1 gets 505"

# 5. The image's HEALTHCHECK, run on demand (podman's timers need systemd, absent here).
if podman healthcheck run "$NAME" >"$WORK/hc.out" 2>&1; then
    health=$(podman inspect --format '{{.State.Health.Status}}' "$NAME")
    [ "$health" = healthy ] || fail "healthcheck passed but status is '$health'"
    step "podman healthcheck run: $health"
else
    cat "$WORK/hc.out" >&2
    fail "podman healthcheck run failed"
fi

# 6. SIGTERM with a request in flight: its body arrives after the signal.
(sleep 2; printf 'late body') | curl -s --max-time 20 --http2-prior-knowledge -X POST -T - \
    -o "$WORK/inflight" -w '%{http_code}' "$url" >"$WORK/inflight.code" 2>&1 &
curl_pid=$!
for _ in $(seq 50); do  # until curl's connection is up (bounded: 5 s); the log check below confirms it
    command -v ss >/dev/null || break
    ss -Htn state established "( dport = :$port )" | grep -q . && break
    sleep 0.1
done
sleep 0.5  # let the request's HEADERS reach the app
step "podman stop -t $GRACE (SIGTERM) with one request in flight"
started=$SECONDS
podman stop -t "$GRACE" "$NAME" >/dev/null 2>"$WORK/stop.err" || { cat "$WORK/stop.err" >&2; fail "podman stop failed"; }
took=$((SECONDS - started))
wait "$curl_pid" || true
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
podman logs "$NAME" >"$WORK/logs" 2>&1
[ "$code" = 0 ] || { cat "$WORK/logs" >&2; fail "exit code $code after SIGTERM (137 means podman had to SIGKILL it)"; }
[ "$took" -lt "$GRACE" ] || fail "stopping took ${took}s, not under the ${GRACE}s grace period"
grep -q "received SIGTERM: stopping gracefully" "$WORK/logs" || { cat "$WORK/logs" >&2; fail "no graceful-shutdown log line"; }
grep -q "shutting down: 1 connection(s) open" "$WORK/logs" || { cat "$WORK/logs" >&2; fail "the in-flight request's connection was not open at SIGTERM"; }
grep -qx "stopped" <(sed 's/.*\] //' "$WORK/logs") || { cat "$WORK/logs" >&2; fail "no 'stopped' log line"; }
[ "$(cat "$WORK/inflight.code")" = 200 ] && [ "$(cat "$WORK/inflight")" = "late body" ] \
    || fail "the in-flight request did not finish during the drain: $(cat "$WORK/inflight.code") $(head -c 200 "$WORK/inflight" 2>/dev/null)"
step "exit code 0 after ${took}s; in-flight request answered; graceful shutdown logged"
echo "container test passed in ${SECONDS}s"
