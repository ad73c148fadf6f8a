"""Views covering the common shapes: plain text, JSON, a CSRF-exempt POST, an async view, a 404."""

from __future__ import annotations

import asyncio

import sniffio
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
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
    loop = asyncio.get_running_loop()
    # asyncio libraries (and anyio, through sniffio) must see asyncio, not the server's trio
    return JsonResponse(
        {
            "async": True,
            "asyncio": isinstance(loop, asyncio.AbstractEventLoop),
            "library": sniffio.current_async_library(),
        }
    )


def missing(request: HttpRequest, name: str) -> HttpResponse:
    raise Http404(f"no such thing: {name}")


# -- views the WSGI tests use ----------------------------------------------------------------------


def form(request: HttpRequest) -> HttpResponse:
    """GET: a form with a CSRF token (and the csrftoken cookie); POST: the submitted fields."""
    from django.middleware.csrf import get_token

    if request.method == "POST":
        return JsonResponse({k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"})
    return HttpResponse(f'<form method="post"><input name="csrfmiddlewaretoken" value="{get_token(request)}"></form>')


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    import hashlib

    out = {}
    for name, f in request.FILES.items():
        digest = hashlib.sha256()
        for chunk in f.chunks():
            digest.update(chunk)
        out[name] = {"name": f.name, "size": f.size, "sha256": digest.hexdigest()}
    return JsonResponse({"files": out, "fields": request.POST.dict()})


def streaming(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse((f"row {i}\n" for i in range(1000)), content_type="text/plain")


def file(request: HttpRequest) -> FileResponse:
    import tempfile

    fh = tempfile.TemporaryFile()
    fh.write(b"0123456789" * 200_000)
    fh.seek(0)
    return FileResponse(fh, content_type="application/octet-stream")
