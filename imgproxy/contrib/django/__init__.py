"""Django: serve files of any Django `Storage`, build Settings from `settings.IMGPROXY`, check
uploads (`validators`), and keep a file field's renditions in step with it (`lifecycle`, on
the proxy that `serving` registers)."""

from imgproxy.contrib.django.storage import DjangoStorageStore

__all__ = ["DjangoStorageStore"]
