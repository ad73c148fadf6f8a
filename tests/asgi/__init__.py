"""Tests of h2gate.asgi: scope, receive()/send(), lifespan, extensions, push, WebSockets, the asyncio host."""
