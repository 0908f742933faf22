"""One decoded frame -> the renditions of every still job that starts from it, each exactly
the bytes a lone render makes. Jobs of one transform that run at once (a WebP and a JPEG of
one size) share their resize. Used by sharing.py, from several render threads at once.
"""

from __future__ import annotations

import dataclasses
import threading

from PIL import Image

from imgproxy.job import RenderJob
from imgproxy.params import Transform
from imgproxy.render import Decoded, Rendered, finish
from imgproxy.render.layout import transformed


class _Made:
    """A transform's pixels, made by the first job that asks, while any job needs them."""

    __slots__ = ("image", "lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.image: Image.Image | None = None
        self.users = 0

    def copy(self, decoded: Decoded, t: Transform, job: RenderJob) -> Image.Image:
        """Each job encodes its own copy (output-sized, counted in its working memory):
        Pillow's save() sets attributes on the image it saves."""
        with self.lock:  # a job asking meanwhile waits rather than resizing again
            if self.image is None:
                self.image = transformed(decoded, t, job)
            return self.image.copy()


class SharedFrame:
    """Pillow's resize and crop only read the frame, so threads may share it. A transform's
    pixels live while a job that counts them runs (`enter` .. `leave`), or while the
    caller keeps them counted (`leave` says how many bytes; `drop` forgets them)."""

    __slots__ = ("_lock", "_made", "decoded")

    def __init__(self, decoded: Decoded) -> None:
        self.decoded = decoded
        self._lock = threading.Lock()
        self._made: dict[Transform, _Made] = {}

    @property
    def nbytes(self) -> int:
        """What the frame holds: Pillow keeps RGB and RGBA alike in 4 bytes a pixel."""
        return self.decoded.frame.width * self.decoded.frame.height * 4

    def enter(self, t: Transform) -> Transform:
        """The transform's pixels held for a job; returns their key, which `render`,
        `leave` and `drop` take (one dataclasses.replace a job, not four)."""
        key = pixels(t)
        with self._lock:
            made = self._made.get(key) or self._made.setdefault(key, _Made())
            made.users += 1
        return key

    def render(self, job: RenderJob, key: Transform) -> Rendered:
        """Between `enter` and `leave` of the job's transform."""
        with self._lock:
            made = self._made[key]
        return finish(self.decoded, job, made.copy)

    def leave(self, key: Transform) -> int:
        """The bytes of the transform's pixels once no job holds them (0: none, or held)."""
        with self._lock:
            made = self._made[key]
            made.users -= 1
            if made.users:
                return 0
            if made.image is None:
                del self._made[key]
                return 0
            return made.image.width * made.image.height * 4

    def drop(self, key: Transform) -> None:
        with self._lock:
            made = self._made.get(key)
            if made is not None and not made.users:
                del self._made[key]


def pixels(t: Transform) -> Transform:
    """What decides a transform's pixels: its output format and quality only its encoding."""
    return dataclasses.replace(t, format=None, quality=None)
