"""The WSGI entry point, exactly as ``django-admin startproject`` writes it, plus a validated variant."""

from __future__ import annotations

import os

from apps.wsgicheck import validator
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()

#: the same app inside wsgiref's validator (serve with --interface wsgi: the wrapper takes *args)
validated = validator(application)
