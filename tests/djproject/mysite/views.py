"""Views covering the common shapes: plain text, JSON, a CSRF-exempt POST, an async view, a 404."""

from __future__ import annotations

import asyncio

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("django over h2gate", content_type="text/plain")


def info(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": request.GET.dict(),
            "scheme": request.scheme,
            "host": request.get_host(),
            "server_port": request.META.get("SERVER_PORT"),
            "cookies": request.COOKIES,
            "remote_addr": request.META.get("REMOTE_ADDR"),
        }
    )


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return HttpResponse(request.body, content_type=request.content_type or "application/octet-stream")


def guarded(request: HttpRequest) -> HttpResponse:
    """Not CSRF-exempt: a cookieless POST is refused by the middleware with 403."""
    return HttpResponse("accepted")


async def slow(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"async": True, "loop": type(asyncio.get_running_loop()).__name__})


def missing(request: HttpRequest, name: str) -> HttpResponse:
    raise Http404(f"no such thing: {name}")
