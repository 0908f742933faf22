"""Raw path + query -> Target: the first four stages of SPEC §10, path syntax (400), store
(404), signature (403) and params (400), in that order.

They are pure functions of the URL and the settings, so an accepted URL is judged once and
remembered: a repeat request (the hit path) skips all four.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from imgproxy.dialects import Dialect, Translation
from imgproxy.dialects.translation import Sized
from imgproxy.errors import NotFound
from imgproxy.memo import Memo
from imgproxy.mounts import Mounted
from imgproxy.params import Query, parse_query
from imgproxy.paths import check_relative, parse_path
from imgproxy.query_string import query_pairs, to_params
from imgproxy.signing import Signer

# Characters of the URLs a worker remembers, here and in each Variant (variant.py): 20 000
# URLs of 100 characters need 2 Mi; without it, URLs of 64 KiB each (the request head's
# bound) held 120 KB a 404 and 2.4 GB at the count's bound (SPEC §11.1).
URL_CHARS = 4 * 2**20


def url_chars(key: tuple[str, str], _: object = None) -> int:
    """A Target's key's weight: the characters of its raw path and query (the Target keeps
    the path once more, decoded: about twice this in bytes)."""
    return len(key[0]) + len(key[1])


@dataclass(frozen=True, slots=True)
class Target:
    """An accepted URL: its store, the path inside it and the parsed parameters."""

    key: tuple[str, str]  # the raw path and query it was parsed from
    mount: Mounted
    path: str
    query: Query
    sized: Sized | None = None  # a dialect's meaning for the source's size (Translation)


class Targets:
    def __init__(
        self,
        mounts: Mapping[str, Mounted],
        signer: Signer,
        presets: Mapping[str, str],
        dialects: Mapping[str, Dialect] | None = None,
        watermarks: Collection[str] = (),
    ) -> None:
        self.mounts = mounts
        self.signer = signer
        self.presets = presets
        self.dialects = dialects or {}
        self.watermarks = frozenset(watermarks)  # the names `wm` may take
        self._known: Memo[tuple[str, str], Target] = Memo(
            20_000, weigh=url_chars, max_weight=URL_CHARS
        )

    def judge(self, path: str, query: str) -> Target:
        target = self._known.get((path, query))
        if target is not None:
            return target
        first, _, rest = path[1:].partition("/")
        dialect = self.dialects.get(first) if path.startswith("/") else None
        if dialect is not None:
            return self._foreign(path, query, dialect.translate(rest, query))
        where = parse_path(path)
        mount = self.mounts.get(where.store)
        if mount is None:
            raise NotFound(f"no store named {where.store!r}")
        pairs = query_pairs(query)
        self.signer.check(path, pairs)
        parsed = parse_query(
            to_params(pairs),
            presets=self.presets,
            max_dimension=mount.limits.max_output_dimension,
            watermarks=self.watermarks,
        )
        target = self._known[(path, query)] = Target((path, query), mount, where.path, parsed)
        return target

    def _foreign(self, path: str, query: str, meant: Translation) -> Target:
        """A dialect's URL, its own signature already checked: the native signature stage
        does not apply, every later stage does."""
        mount = self.mounts.get(meant.store)
        if mount is None:
            raise NotFound(f"no store named {meant.store!r}")
        parsed = parse_query(
            meant.params,
            presets=self.presets,
            max_dimension=mount.limits.max_output_dimension,
            watermarks=self.watermarks,
        )
        check_relative(meant.path)
        target = Target((path, query), mount, meant.path, parsed, meant.sized)
        self._known[(path, query)] = target
        return target
