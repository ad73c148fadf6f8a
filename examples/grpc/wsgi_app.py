"""The example service as a WSGI app: ``h2gate --app-dir examples/grpc wsgi_app:app --threads 32``.

The same service as asgi_app.py with plain functions. Each call runs in one
of h2gate's WSGI threads for its whole life, streams included: ``--threads``
bounds the calls in progress at once (further calls wait for a thread).
gRPC needs response trailers, which h2gate offers WSGI apps as
``environ["wsgi.ext.http.send_trailers"]``; connectrpc uses it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from connectrpc.request import RequestContext
from greet.v1.greet_connect import GreetServiceWSGIApplication
from greet.v1.greet_pb2 import GreetRequest, GreetResponse
from greeter import MANY, PAUSE, greeting


class Greeter:
    def greet(self, request: GreetRequest, ctx: RequestContext) -> GreetResponse:
        return greeting(request)

    def greet_many(self, request: GreetRequest, ctx: RequestContext) -> Iterator[GreetResponse]:
        for n in range(1, MANY + 1):
            if n > 1:
                time.sleep(PAUSE)
            yield greeting(request, n)

    def chat(self, requests: Iterator[GreetRequest], ctx: RequestContext) -> Iterator[GreetResponse]:
        for request in requests:
            yield greeting(request)


app = GreetServiceWSGIApplication(Greeter())
