"""The example gRPC service plus a page that calls it from the browser (tests/rpc/test_browser.py).

``GET /`` is the page and ``GET /bundle.js`` the bundled connect-web client,
both read from ``$H2GATE_BROWSER_BUNDLE`` (a directory the test fills);
everything else goes to the example service (examples/grpc), which answers
Connect, gRPC-Web and gRPC on the same routes. ``asgi_app`` and
``wsgi_app`` serve the example's ASGI and WSGI variants.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asgi_app import app as example_asgi  # type: ignore[import-not-found]  # examples/grpc on the path
from wsgi_app import app as example_wsgi  # type: ignore[import-not-found]

PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/bundle.js": ("bundle.js", "text/javascript")}


def _page(path: str) -> tuple[bytes, str] | None:
    if path not in PAGES:
        return None
    name, content_type = PAGES[path]
    return (Path(os.environ["H2GATE_BROWSER_BUNDLE"]) / name).read_bytes(), content_type


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    page = _page(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
    if page is None:
        await example_asgi(scope, receive, send)
        return
    body, content_type = page
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    page = _page(environ["PATH_INFO"]) if environ["REQUEST_METHOD"] == "GET" else None
    if page is None:
        return example_wsgi(environ, start_response)  # type: ignore[no-any-return]
    body, content_type = page
    start_response("200 OK", [("content-type", content_type), ("content-length", str(len(body)))])
    return [body]
