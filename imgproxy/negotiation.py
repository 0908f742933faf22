"""`Accept` header -> output format for `fm=auto` (SPEC §2.1, §10).

The server's preference order is fixed (avif, webp, then jpeg/png); q-values only exclude
(`q=0`), and wildcards never admit the modern formats, since many clients send `*/*`
without being able to decode them.
"""

from __future__ import annotations

from imgproxy.formats import OutputFormat


def accepted_types(accept: str) -> frozenset[str]:
    """The explicitly named media types with q > 0, lower-cased."""
    types = set()
    for item in accept.split(","):
        media, *options = (part.strip() for part in item.split(";"))
        if not media:
            continue
        if any(_is_zero_q(option) for option in options):
            continue
        types.add(media.lower())
    return frozenset(types)


def _is_zero_q(option: str) -> bool:
    name, _, value = option.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value.strip()) <= 0.0
    except ValueError:
        return False


def negotiate(accept: str, *, has_alpha: bool, avif: bool) -> OutputFormat:
    types = accepted_types(accept)
    if avif and "image/avif" in types:
        return OutputFormat.AVIF
    if "image/webp" in types:
        return OutputFormat.WEBP
    return OutputFormat.PNG if has_alpha else OutputFormat.JPEG
