"""WSGI entry (Django's runserver, gunicorn, uWSGI): the proxy as WSGI middleware."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
django_app = get_wsgi_application()

from django_site.proxy import proxy  # noqa: E402 - needs Django set up first
from imgproxy.contrib.django import serving  # noqa: E402

application = serving.wsgi(django_app, proxy, prefix="/media")
