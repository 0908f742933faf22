"""`wm=NAME` -> the Mark to draw: a `[watermarks.NAME]` entry and its mark, stat'ed and judged
like a source by its own store's policy and limits (403, 415, 413; SPEC §15.1).

The mark's version and settings are part of every marked rendition's ETag and cache key, so
replacing its file changes every rendition that carries it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgproxy.errors import ConfigError
from imgproxy.job import MarkJob
from imgproxy.settings import Settings, WatermarkSettings

if TYPE_CHECKING:  # only its attributes are read here; importing source would load Pillow
    from imgproxy.source import Source


@dataclass(frozen=True, slots=True)
class Mark:
    name: str
    settings: WatermarkSettings
    source: Source  # its file's version, approval and header facts

    def ident(self) -> tuple[str, ...]:
        """What a marked rendition's ETag adds: the mark's version and how it is drawn."""
        file, wm = self.source.file, self.settings
        drawn = f"{wm.position},{wm.opacity:g},{wm.scale:g},{wm.margin}"
        return ("wm", self.source.mount.name, file.path, file.version, str(file.approved), drawn)

    def job(self) -> MarkJob:
        source, wm = self.source, self.settings
        return MarkJob(
            position=wm.position,
            opacity=wm.opacity,
            scale=wm.scale,
            margin=wm.margin,
            decoders=source.mount.policy.decoders(source.file.approved),
            max_pixels=source.mount.limits.max_source_pixels,
            size=source.info.size,
            bytes=source.info.bytes,
            key=self.ident(),
        )


def check_watermarks(settings: Settings, stores: Collection[str]) -> None:
    """Each `[watermarks.NAME]` reads from a mounted store, refused at startup by its key."""
    for name, mark in settings.watermarks.items():
        if mark.store not in stores:
            known = ", ".join(sorted(stores)) or "none configured"
            raise ConfigError(
                f"watermarks.{name}.store: no store named {mark.store!r} (known: {known})"
            )
