"""The gRPC service bench/grpc_calls.py loads: the example's GreetService (examples/grpc) without its pauses.

``asgi_app`` and ``wsgi_app`` answer the same way. The generated code is the
example's (``greet.v1``, committed); bench/grpc_calls.py puts examples/grpc on the
servers' PYTHONPATH.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from greet.v1.greet_connect import GreetServiceASGIApplication, GreetServiceWSGIApplication
from greet.v1.greet_pb2 import GreetRequest, GreetResponse

MANY = 3


def _reply(request: GreetRequest, ctx: RequestContext) -> GreetResponse:
    if not request.name:
        raise ConnectError(Code.INVALID_ARGUMENT, "a name is required")
    ctx.response_trailers["x-served-by"] = "bench"  # the check reads it back from the trailers
    return GreetResponse(greeting=f"Hello, {request.name}!")


class AsyncGreeter:
    async def greet(self, request: GreetRequest, ctx: RequestContext) -> GreetResponse:
        return _reply(request, ctx)

    async def greet_many(self, request: GreetRequest, ctx: RequestContext) -> AsyncIterator[GreetResponse]:
        for _ in range(MANY):
            yield _reply(request, ctx)

    async def chat(self, requests: AsyncIterator[GreetRequest], ctx: RequestContext) -> AsyncIterator[GreetResponse]:
        async for request in requests:
            yield _reply(request, ctx)


class SyncGreeter:
    def greet(self, request: GreetRequest, ctx: RequestContext) -> GreetResponse:
        return _reply(request, ctx)

    def greet_many(self, request: GreetRequest, ctx: RequestContext) -> Iterator[GreetResponse]:
        for _ in range(MANY):
            yield _reply(request, ctx)

    def chat(self, requests: Iterator[GreetRequest], ctx: RequestContext) -> Iterator[GreetResponse]:
        for request in requests:
            yield _reply(request, ctx)


asgi_app = GreetServiceASGIApplication(AsyncGreeter())
wsgi_app = GreetServiceWSGIApplication(SyncGreeter())
