"""ASGI entry: `uvicorn django_site.asgi:application` (from examples/django_site)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
django_app = get_asgi_application()

from django_site.proxy import proxy  # noqa: E402 - needs Django set up first
from imgproxy.contrib.django import serving  # noqa: E402

application = serving.asgi(django_app, proxy, prefix="/media")
