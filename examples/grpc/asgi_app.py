"""The example service as an ASGI app: ``h2gate --app-dir examples/grpc asgi_app:app``.

Serves gRPC (grpcio and every other gRPC client), gRPC-Web and Connect on
the same routes; connectrpc tells them apart by content-type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from connectrpc.request import RequestContext
from greet.v1.greet_connect import GreetServiceASGIApplication
from greet.v1.greet_pb2 import GreetRequest, GreetResponse
from greeter import MANY, PAUSE, greeting


class Greeter:
    async def greet(self, request: GreetRequest, ctx: RequestContext) -> GreetResponse:
        return greeting(request)

    async def greet_many(self, request: GreetRequest, ctx: RequestContext) -> AsyncIterator[GreetResponse]:
        for n in range(1, MANY + 1):
            if n > 1:
                await anyio.sleep(PAUSE)  # anyio: the same code runs under --loop asyncio and --loop trio
            yield greeting(request, n)

    async def chat(self, requests: AsyncIterator[GreetRequest], ctx: RequestContext) -> AsyncIterator[GreetResponse]:
        async for request in requests:
            yield greeting(request)


app = GreetServiceASGIApplication(Greeter())
