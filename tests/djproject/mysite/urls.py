from __future__ import annotations

from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.plain),
    path("info", views.info),
    path("echo", views.echo),
    path("guarded", views.guarded),
    path("async", views.slow),
    path("things/<str:name>", views.missing),
    path("form", views.form),
    path("upload", views.upload),
    path("streaming", views.streaming),
    path("file", views.file),
]
