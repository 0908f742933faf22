"""An S3 object's user metadata, as the `s3` store reads it (SPEC §12.1, §13): whether the
object is approved, and its focal point, whichever client wrote them (boto3, the aws CLI, a
console, obstore). S3 metadata names are case-insensitive; values are strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgproxy.stores.base import focal_point

FOCAL_METADATA = "focal"
# obstore hands user metadata over without S3's `x-amz-meta-` prefix: boto3's
# Metadata={"approved": "true"}, the aws CLI's --metadata and the consoles send
# `x-amz-meta-approved`, which arrives as "approved". An object written through obstore's own
# attributes under the whole header name ("x-amz-meta-approved") has that as its metadata
# name (its header is sent twice-prefixed), so that spelling is read too, after the real one.
METADATA_PREFIX = "x-amz-meta-"


def _metadata(attributes: Mapping[str, Any], name: str) -> str | None:
    """User metadata `name` (`x-amz-meta-<name>` on the wire), in either spelling obstore
    surfaces it (see METADATA_PREFIX); S3 metadata names are case-insensitive."""
    found = {key.lower(): value for key, value in attributes.items() if isinstance(value, str)}
    for spelling in (name, METADATA_PREFIX + name):
        if spelling in found:
            return found[spelling]
    return None


def approved_in(attributes: Mapping[str, Any], name: str, default: bool) -> bool:
    """`x-amz-meta-approved: true|false` wins over the store's default (SPEC §12.1)."""
    value = _metadata(attributes, name)
    answer = (value or "").strip().lower()
    if answer in ("true", "1", "yes"):
        return True
    if answer in ("false", "0", "no"):
        return False
    return default


def focal_in(attributes: Mapping[str, Any]) -> tuple[float, float] | None:
    """`x-amz-meta-focal: 0.3,0.6`: the subject's place, as fractions (SPEC §13)."""
    value = _metadata(attributes, FOCAL_METADATA)
    if value is not None and value.count(",") == 1:
        return focal_point(*value.split(","))
    return None
