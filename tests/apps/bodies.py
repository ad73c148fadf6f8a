"""Apps for request trailers and file bodies: ASGI ``app`` (zerocopysend, trailers) and WSGI ``wsgi``.

ASGI ``app``:

* ``/trailers`` reads the body and answers JSON: every ``http.request`` message's
  body length, ``more_body`` and ``trailers`` key, and whether the scope advertises
  ``http.request.trailers``.
* ``/zerocopy?file=PATH[&offset=N][&count=N][&split=N]`` answers with the file
  through ``http.response.zerocopysend`` (``split``: first N bytes in one message
  with ``more_body``, the rest in a second); ``&pos=N`` seeks the file to N first and
  omits ``offset``, then a trailing ``x-pos`` body line reports where the file ended up.
* ``/zerocopy-bad`` sends a zerocopysend whose ``file`` is a BytesIO (not a real file).

WSGI ``wsgi``:

* ``/trailers`` reads ``wsgi.input`` to its end and answers the body size and
  ``h2gate.request_trailers`` (before and after the read) as JSON.
* ``/file?file=PATH`` returns ``wsgi.file_wrapper`` over the open file.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import parse_qs

from .common import respond


def _query(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {k: v[0] for k, v in parse_qs(text).items()}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path, query = scope["path"], _query(scope["query_string"])
    messages = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        trailers = message.get("trailers")
        messages.append(
            {
                "body": len(message.get("body", b"")),
                "more_body": message.get("more_body", False),
                "trailers": None if trailers is None else [[n.decode(), v.decode()] for n, v in trailers],
            }
        )
        if not message.get("more_body", False):
            break
    if path == "/trailers":
        advertised = "http.request.trailers" in scope["extensions"]
        await respond(send, 200, json.dumps({"advertised": advertised, "messages": messages}).encode())
    elif path == "/zerocopy":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with open(query["file"], "rb") as file:
            if "pos" in query:
                file.seek(int(query["pos"]))
                await send({"type": "http.response.zerocopysend", "file": file, "more_body": True})
                await send({"type": "http.response.body", "body": f"\nx-pos {file.tell()}".encode()})
                return
            extra = {k: int(query[k]) for k in ("offset", "count") if k in query}
            if "split" in query:
                offset, split = extra.get("offset", 0), int(query["split"])
                first = {"offset": offset, "count": split}
                await send({"type": "http.response.zerocopysend", "file": file, **first, "more_body": True})
                extra = {"offset": offset + split, **({"count": extra["count"] - split} if "count" in extra else {})}
            await send({"type": "http.response.zerocopysend", "file": file, **extra})
    elif path == "/zerocopy-bad":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.zerocopysend", "file": io.BytesIO(b"not a file")})
    else:
        await respond(send, 404)


def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
    path, query = environ["PATH_INFO"], _query(environ["QUERY_STRING"])
    if path == "/trailers":
        before = list(environ["h2gate.request_trailers"])
        size = len(environ["wsgi.input"].read())
        after = [[n.decode(), v.decode()] for n, v in environ["h2gate.request_trailers"]]
        body = json.dumps({"size": size, "before_read": len(before), "trailers": after}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(query["file"], "rb"), 8192)  # the server calls its close()
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]
