"""Raw request path (still percent-encoded) -> (store name, store-relative path).

The path is decoded exactly once and then judged on its decoded form, so no spelling of
`..`, an absolute path or a control character survives to a store (SPEC §2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from imgproxy.errors import BadRequest, NotFound

_STORE = re.compile(r"[a-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ImagePath:
    store: str
    path: str


def parse_path(raw: str) -> ImagePath:
    """`/{store}/{path}` as sent on the wire -> its store and decoded relative path."""
    if not raw.startswith("/"):
        raise BadRequest("path: must start with '/'")
    store, _, rest = raw[1:].partition("/")
    if not _STORE.fullmatch(store):
        raise NotFound("no such store")
    try:
        path = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("path: not valid UTF-8 after percent-decoding") from None
    check_relative(path)
    return ImagePath(store, path)


def check_relative(path: str) -> None:
    """A decoded store-relative path, whatever URL named it: 404 if empty, 400 for anything
    that could leave the store's root (SPEC §2)."""
    if not path:
        raise NotFound("no file named in the path")
    if _CONTROL.search(path) or "\\" in path:
        raise BadRequest("path: control characters and backslashes are not allowed")
    if path.startswith("/"):
        raise BadRequest("path: absolute paths are not allowed")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise BadRequest("path: empty, '.' and '..' segments are not allowed")
