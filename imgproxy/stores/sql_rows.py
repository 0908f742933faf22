"""What the `sql` store's two backends share: the configured table and columns, checked as
plain identifiers and quoted into the one metadata query, and a row read back as a
StoredFile. The key comes from the URL and is always a bound parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imgproxy.errors import ConfigError, NotFound, UpstreamTimeout
from imgproxy.stores.base import StoredFile, focal_point

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
CHUNK = 256 * 1024


def too_slow(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the database did not answer within {seconds:g} s")


@dataclass(frozen=True, slots=True)
class Columns:
    table: str
    key: str
    data: str
    updated: str
    approved: str | None
    focal: tuple[str, str] | None = None

    @classmethod
    def from_names(
        cls,
        *,
        table: str,
        key_column: str,
        data_column: str,
        updated_column: str,
        approved_column: str | None = None,
        focal_x_column: str | None = None,
        focal_y_column: str | None = None,
    ) -> Columns:
        """Validated, then quoted: the names reach SQL text, so nothing but a plain
        identifier may pass (errors name the option, e.g. `table: ...`)."""

        def quoted(option: str, value: str) -> str:
            if not IDENTIFIER.fullmatch(value):
                raise ConfigError(f"{option}: must be a plain SQL identifier")
            return f'"{value}"'

        return cls(
            table=quoted("table", table),
            key=quoted("key_column", key_column),
            data=quoted("data_column", data_column),
            updated=quoted("updated_column", updated_column),
            approved=None
            if approved_column is None
            else quoted("approved_column", approved_column),
            focal=None
            if focal_x_column is None or focal_y_column is None
            else (
                quoted("focal_x_column", focal_x_column),
                quoted("focal_y_column", focal_y_column),
            ),
        )

    def metadata_query(self, placeholder: str, *, rowid: bool) -> str:
        # length()/octet_length() read the BLOB's size from its header, not its content.
        length = "length" if rowid else "octet_length"
        approved = self.approved or "NULL"
        focal = ", ".join(self.focal) if self.focal else "NULL, NULL"
        first = "rowid, " if rowid else ""
        # Identifiers are validated and quoted (from_names); the key is a bound parameter.
        return (
            f"SELECT {first}{length}({self.data}), {self.updated}, {approved}, {focal} "  # noqa: S608
            f"FROM {self.table} WHERE {self.key} = {placeholder}"
        )


def timestamp(value: Any) -> float | None:
    """A column's update time as POSIX seconds; naive values are UTC (SPEC §7)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    return None


def stored_file(
    path: str,
    length: Any,
    updated: Any,
    approved: Any,
    default_approved: bool,
    focal: tuple[Any, Any] = (None, None),
) -> StoredFile:
    if length is None:
        raise NotFound("the row has no image")
    modified = timestamp(updated)
    return StoredFile(
        path=path,
        version=f"{modified!r}-{length:x}",
        approved=default_approved if approved is None else bool(approved),
        size=int(length),
        modified=modified,
        filename=path.rsplit("/", 1)[-1],
        focal=focal_point(*focal),
    )
