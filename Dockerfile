# h2gate as a container image. By default it serves the bundled example app
# (h2gate.examples.hello:app) as cleartext HTTP/2 (h2c) on port 8000.
#
#   podman build --format docker -t h2gate .      # "--format docker" keeps HEALTHCHECK (OCI images drop it)
#   podman run --rm -p 127.0.0.1:8000:8000 h2gate
#   curl --http2-prior-knowledge http://127.0.0.1:8000/
#
# Your own app, mounted (or COPY it into /app in an image built FROM this one):
#   podman run --rm -p 8000:8000 -v "$PWD:/app:ro" -e H2GATE_APP=myapp:app h2gate
#
# Everything is configured through H2GATE_* variables (see the README's options
# table); flags after the image name work too, but the HEALTHCHECK only sees
# the environment, so keep the bind and TLS settings there.

# The base only has to provide python3 (3.11+) with the venv module. The
# official slim image is the default; build with
# --build-arg PYTHON_IMAGE=... to use a local or mirrored one instead.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

# Stage 1: install h2gate and its dependencies into a self-contained venv.
# The sources, pip's caches and build-only packages stay behind in this stage.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# setup.py and build_support/ are the build backend (the pure wheel here: H2GATE_MYPYC is not set).
COPY pyproject.toml setup.py README.md LICENSE ./
COPY build_support ./build_support
COPY h2gate ./h2gate
RUN python3 -m venv /opt/h2gate \
 && /opt/h2gate/bin/pip install --no-compile . \
 && /opt/h2gate/bin/python -m compileall -q /opt/h2gate/lib \
 && /opt/h2gate/bin/h2gate --version

# Stage 2: the runtime image: the base plus the venv and an unprivileged user.
FROM ${PYTHON_IMAGE}
# A numeric, fixed uid/gid so that Kubernetes' runAsNonRoot can check it and
# mounted files can be chowned to it from outside.
RUN groupadd --gid 10001 h2gate \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin h2gate
COPY --from=build /opt/h2gate /opt/h2gate
# Defaults, each overridable with -e: the example app on all interfaces, and a
# drain time that fits inside the 10 s `podman stop` / `docker stop` give before
# SIGKILL (raise both together: --stop-timeout, terminationGracePeriodSeconds).
ENV PATH=/opt/h2gate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    H2GATE_APP=h2gate.examples.hello:app \
    H2GATE_BIND=0.0.0.0:8000 \
    H2GATE_GRACEFUL_TIMEOUT=8
# The app's directory: on sys.path (--app-dir defaults to "."), mount or copy code here.
WORKDIR /app
USER 10001:10001
EXPOSE 8000

# h2gate speaks only HTTP/2 (HTTP/1.1 gets a 505), so curl/wget-style probes do
# not fit; the bundled probe speaks h2c or TLS+ALPN h2 and, given no URL, checks
# the first bind in H2GATE_BIND (a 0.0.0.0 host becomes 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "h2gate.healthcheck", "--quiet", "--timeout", "4"]

# Exec form: h2gate itself is PID 1 and receives the stop signal directly. It
# installs its own SIGTERM/SIGINT handlers (graceful shutdown: GOAWAY, drain for
# H2GATE_GRACEFUL_TIMEOUT seconds, exit 0), which PID 1 needs because the kernel
# drops signals PID 1 has no handler for. No init (tini) is bundled: h2gate
# waits for every process it starts itself, so only an app that spawns
# subprocesses which can be orphaned needs a reaper: run it with
# `podman run --init` / `docker run --init` (or `shareProcessNamespace: true`
# in Kubernetes, where the pause container reaps).
STOPSIGNAL SIGTERM
ENTRYPOINT ["h2gate"]
