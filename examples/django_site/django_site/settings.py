"""A Django site whose photo uploads (a FileField on a model, in Django's default storage) are
served, checked and thumbnailed by imgproxy; the repository's sample photos are served too."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"  # noqa: S105 - an example site, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.staticfiles", "imgproxy.contrib.django", "gallery"]
ROOT_URLCONF = "django_site.urls"
MIDDLEWARE = ["django.middleware.csrf.CsrfViewMiddleware"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]
USE_TZ = True
STATIC_URL = "static/"
WSGI_APPLICATION = "django_site.wsgi.application"
IMGPROXY_MOUNT = "/media"  # where asgi.py / wsgi.py mount the proxy (for the template tags)

# The database, the uploads and imgproxy's disk cache: ./var, or $DJANGO_SITE_DATA.
DATA = Path(os.environ.get("DJANGO_SITE_DATA") or BASE_DIR / "var")
DATA.mkdir(parents=True, exist_ok=True)  # SQLite makes its file, not its folder
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA / "site.sqlite3"}}
MEDIA_ROOT = DATA / "uploads"
MEDIA_URL = "/media/uploads/"  # a file's .url is its original, served by the `uploads` store
SAMPLES = BASE_DIR.parent / "media"  # the repository's sample photos: the `photos` store

# imgproxy, configured like its TOML file (IMGPROXY_* environment variables override it).
# Its stores are Django storages, handed over in proxy.py.
IMGPROXY = {
    "security": {"keys": ["example-signing-key"]},
    "server": {"timing": True},  # Server-Timing shows what each image cost
    "cache": {"disk_path": str(DATA / "cache")},
    "presets": {
        "thumb": "w=240&h=240&fit=cover&fm=auto",
        "card": "w=480&h=320&fit=cover&fm=auto",
    },
}
# Whose rules imgproxy.fetch applies (a [stores] entry of kind http); none: its defaults,
# public addresses only, 5 s.
GALLERY_FETCH_STORE = os.environ.get("GALLERY_FETCH_STORE") or None
