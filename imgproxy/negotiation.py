"""`Accept` header -> output format for `fm=auto` (SPEC §2.1, §10).

The server's preference order is fixed (avif, webp, then jpeg/png); q-values only exclude
(`q=0`), and wildcards never admit the modern formats, since many clients send `*/*`
without being able to decode them.
"""

from __future__ import annotations

from imgproxy.formats import OutputFormat

OWS = " \t"
MAX_ACCEPT = 1024


def accepted_types(accept: str) -> frozenset[str]:
    """The explicitly named media types with q > 0, lower-cased. Only the items complete
    within the first MAX_ACCEPT characters count (browsers send under a hundred): a cut item
    could have lost its `q=0`."""
    items = accept[:MAX_ACCEPT].split(",")
    if len(accept) > MAX_ACCEPT:
        items.pop()
    types = set()
    for item in items:
        media, *options = (part.strip(OWS) for part in item.split(";"))
        if not media:
            continue
        if any(_is_zero_q(option) for option in options):
            continue
        types.add(media.lower())
    return frozenset(types)


def _is_zero_q(option: str) -> bool:
    """`q=0`, `q=0.`, `q=0.000`: a qvalue (RFC 9110 §12.4.2) whose ASCII digits are all zero.
    No float(): it reads '1e999', 'nan' and non-ASCII digits. An unreadable q excludes nothing."""
    name, _, value = option.partition("=")
    if name.strip(OWS).lower() != "q":
        return False
    whole, _, fraction = value.strip(OWS).partition(".")
    digits = whole + fraction
    return bool(digits) and digits.isascii() and digits.isdigit() and not digits.strip("0")


def negotiate(accept: str, *, has_alpha: bool, avif: bool) -> OutputFormat:
    types = accepted_types(accept)
    if avif and "image/avif" in types:
        return OutputFormat.AVIF
    if "image/webp" in types:
        return OutputFormat.WEBP
    return OutputFormat.PNG if has_alpha else OutputFormat.JPEG
