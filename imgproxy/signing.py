"""HMAC-SHA256 URL signatures over path + canonical query, with key rotation (SPEC §3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from imgproxy.errors import BadSignature
from imgproxy.settings import SecuritySettings

UNSIGNED_PRESET_KEYS = frozenset({"p", "v"})


Params = Mapping[str, str] | Iterable[tuple[str, str | None]]


def canonical_query(params: Params) -> str:
    """Every param but `s`, sorted by name, values percent-encoded per RFC 3986. Pairs are
    accepted too (a repeated name is then signed as sent, and refused later as a 400)."""
    pairs = params.items() if isinstance(params, Mapping) else params
    return "&".join(
        f"{quote(name, safe='-._~')}={quote(value or '', safe='-._~')}"
        for name, value in sorted(pairs, key=lambda pair: (pair[0], pair[1] or ""))
        if name != "s"
    )


def message(path: str, params: Params) -> str:
    return f"{path}?{canonical_query(params)}"


def signature(key: bytes, text: str, length: int) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:length]


class Signer:
    """Key bytes are prepared once; `check` decides whether this request needs a signature
    and verifies `s` against every key in constant time."""

    def __init__(self, security: SecuritySettings) -> None:
        self.keys: Sequence[bytes] = tuple(key.encode() for key in security.keys)
        self.security = security

    def check(self, path: str, pairs: Sequence[tuple[str, str | None]]) -> None:
        """Judged over the query as sent, before any parameter rule (SPEC §10)."""
        if not self.keys:
            return  # signing off: `s` is ignored (SPEC §10)
        names = {name for name, _ in pairs}
        given = [value for name, value in pairs if name == "s"]
        expected = message(path, pairs)
        if not given:
            if self._required(names):
                raise BadSignature(self._detail("this URL needs a signature (s)", expected))
            return
        s = given[0] or ""
        if (
            len(given) == 1
            and len(s) == self.security.signature_length
            and any(
                hmac.compare_digest(s.encode(), signature(key, expected, len(s)).encode())
                for key in self.keys
            )
        ):
            return
        raise BadSignature(self._detail("the signature does not match", expected))

    def _detail(self, why: str, expected: str) -> str:
        """With `security.debug`, the message the server signs (SPEC §3): the commonest
        support question of every peer is why a signature does not match."""
        return f"{why}; the server signs {expected!r}" if self.security.debug else why

    def _required(self, names: set[str]) -> bool:
        if not names - {"v"}:
            return self.security.sign_originals
        return not (
            self.security.allow_unsigned_presets and "p" in names and names <= UNSIGNED_PRESET_KEYS
        )
