"""A small Starlette app exercising routing, JSON, request bodies, streaming and lifespan state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import anyio
import sniffio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
    print("star: startup", flush=True)
    yield {"started_on": sniffio.current_async_library(), "greeting": "hello from lifespan"}
    print("star: shutdown", flush=True)


async def home(request: Request) -> Response:
    return PlainTextResponse("starlette over h2gate")


async def item(request: Request) -> Response:
    return JSONResponse(
        {
            "item_id": request.path_params["item_id"],
            "q": request.query_params.get("q"),
            "http_version": request.scope["http_version"],
            "scheme": request.url.scheme,
            "host": request.headers["host"],
        }
    )


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


async def form(request: Request) -> Response:
    # urlencoded forms parsed by hand: Starlette's request.form() needs python-multipart
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    return JSONResponse({"fields": fields})


async def upload_size(request: Request) -> Response:
    size = chunks = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks += 1 if chunk else 0
    return JSONResponse({"size": size, "chunks": chunks})


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("n", "5"))

    async def numbers() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"chunk {i}\n".encode()
            await anyio.sleep(0)

    return StreamingResponse(numbers(), media_type="text/plain")


async def state(request: Request) -> Response:
    return JSONResponse(
        {
            "started_on": request.state.started_on,
            "greeting": request.state.greeting,
            "running_on": sniffio.current_async_library(),
        }
    )


async def broken(request: Request) -> Response:
    raise RuntimeError("starlette view failed")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{item_id:int}", item),
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/form", form, methods=["POST"]),
        Route("/upload", upload_size, methods=["POST"]),
        Route("/stream", stream),
        Route("/state", state),
        Route("/broken", broken),
    ],
    lifespan=lifespan,
)
