# mypy: disallow-subclassing-any=False
# (Django ships no type information: its base classes are Any to mypy.)
from django.apps import AppConfig

from imgproxy.contrib.django import lifecycle


class GalleryConfig(AppConfig):
    name = "gallery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from gallery.models import Album, Photo

        # Thumbnails are made when a photo is saved and dropped when it is replaced or
        # deleted; photo files are kept, an album's cover is deleted with it.
        lifecycle.connect(Photo, "image", presets=["thumb", "card"], store="uploads")
        lifecycle.connect(Album, "cover", presets=["thumb"], store="uploads", delete_old=True)
