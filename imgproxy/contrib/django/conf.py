"""`settings.IMGPROXY` (one dict, the TOML file's shape) -> a Settings tree; relative paths
are relative to `settings.BASE_DIR`."""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings as django_settings

from imgproxy.settings import Settings


@functools.cache
def imgproxy_settings() -> Settings:
    """Built once per process, as Django's own settings are."""
    data = getattr(django_settings, "IMGPROXY", {})
    base = Path(getattr(django_settings, "BASE_DIR", Path.cwd()))
    return Settings.from_mapping(data, base_dir=base)
