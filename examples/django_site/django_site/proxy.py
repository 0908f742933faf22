"""The one ImageProxy of the site: Django's default storage, served under MEDIA_URL."""

from django.core.files.storage import default_storage

from imgproxy import ImageProxy
from imgproxy.contrib.django import DjangoStorageStore
from imgproxy.contrib.django.conf import imgproxy_settings

proxy = ImageProxy(
    imgproxy_settings(),
    stores={"photos": DjangoStorageStore(default_storage, approved=True)},
)
