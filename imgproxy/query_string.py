"""A raw query string -> its (name, value) pairs, decoded once and judged by no rule yet,
and those pairs -> params (SPEC §2.1): what the signature covers, then what params.py parses.
"""

from __future__ import annotations

from urllib.parse import unquote

from imgproxy.errors import BadRequest
from imgproxy.param_values import show

Pairs = list[tuple[str, str | None]]


def query_pairs(raw: str) -> Pairs:
    """`a=1&b` -> [('a', '1'), ('b', None)], decoded once and judged by no rule yet: the
    signature is checked over these before any parameter rule (SPEC §10)."""
    pairs: Pairs = []
    for part in raw.split("&"):
        if part:
            name, eq, value = part.partition("=")
            text = unquote(value.replace("+", " ")) if eq else None
            pairs.append((unquote(name.replace("+", " ")), text))
    return pairs


def to_params(pairs: Pairs) -> dict[str, str]:
    """Pairs -> params; repeats and bare names are 400s."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if value is None:
            raise BadRequest(f"{show(name)}: a parameter needs a value (name=value)")
        if name in params:
            raise BadRequest(f"{show(name)}: given more than once")
        params[name] = value
    return params


def split_query(raw: str) -> dict[str, str]:
    """`a=1&b=2` -> {'a': '1', 'b': '2'}, decoded once; repeats and bare names are 400s."""
    return to_params(query_pairs(raw))
