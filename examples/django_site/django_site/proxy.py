"""The one ImageProxy of the site: uploads (Django's default storage) and the sample photos.
asgi.py / wsgi.py mount it under /media and register it, so the gallery's warm and purge
reach the very proxy that serves."""

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage

from imgproxy import ImageProxy
from imgproxy.contrib.django import DjangoStorageStore
from imgproxy.contrib.django.conf import imgproxy_settings

proxy = ImageProxy(
    imgproxy_settings(),
    stores={
        # Uploads are not approved: only JPEG, PNG, WebP and GIF are ever decoded.
        "uploads": DjangoStorageStore(default_storage),
        "photos": DjangoStorageStore(FileSystemStorage(settings.SAMPLES), approved=True),
    },
)
