# h2gate in a container: serves the bundled example app by default.
#   podman build -t h2gate . && podman run --rm -p 8000:8000 h2gate
# Mount your app and run it instead:
#   podman run --rm -p 8443:8443 -v $PWD:/app -w /app h2gate myapp:app -b 0.0.0.0:8443 --certfile cert.pem --keyfile key.pem
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/h2gate
COPY pyproject.toml README.md ./
COPY h2gate ./h2gate
COPY examples ./examples
RUN pip install . && useradd --system --no-create-home h2gate

USER h2gate
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["h2gate"]
CMD ["examples.hello:app", "--bind", "0.0.0.0:8000"]
