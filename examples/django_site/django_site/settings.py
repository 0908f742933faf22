"""A minimal Django site whose media files (a FileSystemStorage) are served by imgproxy."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"  # noqa: S105 - an example site, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.staticfiles", "imgproxy.contrib.django"]
ROOT_URLCONF = "django_site.urls"
MIDDLEWARE: list[str] = []
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "DIRS": [BASE_DIR / "templates"],
    }
]
DATABASES: dict[str, object] = {}
USE_TZ = True
STATIC_URL = "static/"
WSGI_APPLICATION = "django_site.wsgi.application"
IMGPROXY_MOUNT = "/media"  # where asgi.py / wsgi.py mount the proxy (for the template tags)

# The site's uploads: the repository's demo photos.
MEDIA_ROOT = BASE_DIR.parent / "media"
MEDIA_URL = "/media/"

# imgproxy, configured like its TOML file. The `media` store is the Django storage above,
# handed over in asgi.py / wsgi.py.
IMGPROXY = {
    "security": {"keys": ["example-signing-key"]},
    "presets": {"thumb": "w=240&h=240&fit=cover&fm=auto"},
}
