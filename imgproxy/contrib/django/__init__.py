"""Django: serve files of any Django `Storage`, and build Settings from `settings.IMGPROXY`."""

from imgproxy.contrib.django.storage import DjangoStorageStore

__all__ = ["DjangoStorageStore"]
