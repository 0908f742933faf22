"""Every configured preset parses, checked before anything starts: a bad one refuses to run
and names itself. Apart from mounts.py, whose stores a command like `imgproxy serve`'s
supervisor never builds."""

from __future__ import annotations

from imgproxy.errors import BadRequest, ConfigError
from imgproxy.params import parse_query
from imgproxy.query_string import split_query
from imgproxy.settings import Settings


def check_presets(settings: Settings) -> None:
    """Every preset must parse, so a bad one refuses to start and names itself."""
    for name in settings.presets:
        _check_preset(name, settings)


def _check_preset(name: str, settings: Settings) -> None:
    try:
        parse_query(
            split_query(f"p={name}"),
            presets=settings.presets,
            max_dimension=settings.limits.max_output_dimension,
            watermarks=settings.watermarks.keys(),
        )
    except BadRequest as exc:
        raise ConfigError(f"presets.{name}: {exc.detail}") from None
