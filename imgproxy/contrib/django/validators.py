"""An uploaded file -> accepted, or a ValidationError with the server's own error code: the
checks `imgproxy.inspect` runs, so nothing is stored that the server would refuse to serve.

    image = models.FileField(validators=[ImageValidator()])

Use it on a FileField, not an ImageField: Django's ImageField has Pillow open every upload
whatever its format, before any validator runs, which is what the approval policy prevents.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db.models.fields.files import FieldFile
from django.utils.deconstruct import deconstructible

from imgproxy.contrib.django.conf import imgproxy_settings
from imgproxy.errors import ImageProxyError
from imgproxy.inspection import inspect

CHUNK = 256 * 1024


@deconstructible(path="imgproxy.contrib.django.validators.ImageValidator")
class ImageValidator:
    """`store` names a `[stores]` table whose policy and limits apply (else the global ones,
    which are also a Python store's); `approved` is the state an upload is checked in."""

    def __init__(self, *, store: str | None = None, approved: bool = False) -> None:
        self.store = store
        self.approved = approved

    def __call__(self, value: File) -> None:
        if isinstance(value, FieldFile) and value._committed:
            return  # already stored, so checked when it was uploaded; not read back again
        settings = imgproxy_settings()
        limits = settings.stores[self.store].limits if self.store else settings.limits
        # One byte over the limit is enough for inspect to answer too_large.
        data = read_at_most(value, limits.max_source_bytes + 1)
        try:
            inspect(data, settings=settings, approved=self.approved, store=self.store)
        except ImageProxyError as error:
            raise ValidationError(error.detail, code=error.code) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageValidator) and (self.store, self.approved) == (
            other.store,
            other.approved,
        )

    def __hash__(self) -> int:
        return hash((self.store, self.approved))


def read_at_most(file: File, limit: int) -> bytes:
    """The first `limit` bytes, and never one more; the file is left at its start for the save."""
    file.seek(0)
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = file.read(min(left, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    file.seek(0)
    return b"".join(parts)
