"""What the example service does, shared by its ASGI and WSGI variants."""

from __future__ import annotations

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from greet.v1.greet_pb2 import GreetRequest, GreetResponse

#: GreetMany's replies and their spacing in seconds.
MANY = 3
PAUSE = 1.0


def greeting(request: GreetRequest, n: int | None = None) -> GreetResponse:
    """The reply to one request; an empty name is the caller's mistake (INVALID_ARGUMENT)."""
    if not request.name:
        raise ConnectError(Code.INVALID_ARGUMENT, "a name is required")
    suffix = "" if n is None else f" (#{n})"
    return GreetResponse(greeting=f"Hello, {request.name}!{suffix}")
