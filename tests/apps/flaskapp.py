"""A small real Flask app served as WSGI; its wsgi_app runs inside wsgiref's validator."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator

from apps.wsgicheck import validator
from flask import Flask, Response, jsonify, make_response, redirect, request, send_file, stream_with_context

app = Flask(__name__)
app.wsgi_app = validator(app.wsgi_app)  # type: ignore[method-assign]

FILE_SIZE = 3 * 1024 * 1024 + 17
_fd, FILE_PATH = tempfile.mkstemp(prefix="h2gate-flask-")
with os.fdopen(_fd, "wb") as _fh:
    _fh.write(bytes(range(256)) * (FILE_SIZE // 256) + b"x" * (FILE_SIZE % 256))


@app.get("/")
def home() -> str:
    return "flask over h2gate"


@app.post("/form")
def form() -> Response:
    return jsonify(dict(request.form))


@app.post("/json")
def echo_json() -> Response:
    data = request.get_json()
    return jsonify({"got": data, "scheme": request.scheme, "host": request.host})


@app.get("/cookie/set")
def set_cookie() -> Response:
    resp = make_response("set")
    resp.set_cookie("flavour", "oatmeal")
    resp.set_cookie("size", "large")
    return resp


@app.get("/cookie/get")
def get_cookie() -> Response:
    return jsonify(dict(request.cookies))


@app.get("/redirect")
def go_home() -> Response:
    return redirect("/")  # type: ignore[return-value]


@app.post("/upload")
def upload() -> Response:
    digest, total = hashlib.sha256(), 0
    while chunk := request.stream.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    return jsonify({"length": total, "sha256": digest.hexdigest()})


@app.get("/stream")
def stream() -> Response:
    def gen() -> Iterator[str]:
        for i in range(100):
            yield f"chunk {i}\n"

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    return send_file(FILE_PATH, mimetype="application/octet-stream")
