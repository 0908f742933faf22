"""The object-store tier's bucket lifecycle rule -> one line for `imgproxy check`: does an
enabled rule expire the tier's prefix, and after how many days.

GetBucketLifecycleConfiguration is signed here (AWS Signature Version 4, with httpx): obstore
signs object URLs only, and boto3 is no dependency. Only static credentials sign (the tier's
own, else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`); with instance or
SSO credentials the rule is "could not verify", as for an endpoint without lifecycle support.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from imgproxy.settings import CacheSettings

TIMEOUT = 5.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# The XML is the configured endpoint's answer to the operator's `check`: ElementTree resolves
# no external entities, and expat >= 2.4 (Python's) refuses entity expansion bombs.


async def describe(settings: CacheSettings) -> str:
    """`rule 'ID' expires PREFIX after N days`, `no enabled rule ...` or `could not verify`."""
    key, secret, token = _credentials(settings)
    if not key:
        return "could not verify (no static credentials to sign with)"
    url = _bucket_url(settings)
    headers = _signed_headers(url, settings.s3_region, key, secret, token)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return f"could not verify ({type(exc).__name__})"
    code = _error_code(response.text) if response.status_code != 200 else ""
    if code == "NoSuchLifecycleConfiguration":
        return _none(settings.s3_prefix)
    if response.status_code != 200:
        return f"could not verify (HTTP {response.status_code} {code}".rstrip() + ")"
    return _verdict(response.text, settings.s3_prefix)


def _verdict(document: str, prefix: str) -> str:
    try:
        rules = ET.fromstring(document).iter(f"{NS}Rule")  # noqa: S314
    except ET.ParseError:
        return "could not verify (the lifecycle answer is not XML)"
    for rule in rules:
        days = rule.findtext(f"{NS}Expiration/{NS}Days")
        if rule.findtext(f"{NS}Status") != "Enabled" or not days:
            continue
        covered = _rule_prefix(rule)
        if covered is not None and prefix.startswith(covered):
            name = rule.findtext(f"{NS}ID") or "unnamed"
            return f"rule {name!r} expires {prefix or 'the bucket'} after {days} days"
    return _none(prefix)


def _none(prefix: str) -> str:
    return f"no enabled rule expires {prefix or 'the bucket'} (see the README's Fleets section)"


def _rule_prefix(rule: ET.Element) -> str | None:
    """The prefix a rule applies to, or None when it also needs a tag or a size (our objects
    have neither, so it may not cover them)."""
    found = rule.find(f"{NS}Filter")
    if found is None:  # the older form: <Prefix> on the rule itself
        return rule.findtext(f"{NS}Prefix") or ""
    if len(found) == 0:
        return ""
    if len(found) == 1 and found[0].tag == f"{NS}Prefix":
        return found[0].text or ""
    return None


def _error_code(document: str) -> str:
    try:
        return ET.fromstring(document).findtext("Code") or ""  # noqa: S314
    except ET.ParseError:
        return ""


def _credentials(settings: CacheSettings) -> tuple[str, str, str]:
    if settings.s3_access_key_id:
        return settings.s3_access_key_id, settings.s3_secret_access_key, ""
    return (
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
        os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        os.environ.get("AWS_SESSION_TOKEN", ""),
    )


def _bucket_url(settings: CacheSettings) -> str:
    """Path-style on a configured endpoint (as the tier's client), virtual-hosted on AWS."""
    if settings.s3_endpoint_url:
        return f"{settings.s3_endpoint_url.rstrip('/')}/{settings.s3_bucket}?lifecycle="
    return f"https://{settings.s3_bucket}.s3.{settings.s3_region}.amazonaws.com/?lifecycle="


def _signed_headers(url: str, region: str, key: str, secret: str, token: str) -> dict[str, str]:
    """SigV4 for a GET with an empty body (docs.aws.amazon.com, "Create a signed request")."""
    parts = urlsplit(url)
    now = datetime.now(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp}
    if token:
        headers["x-amz-security-token"] = token
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "GET",
            parts.path or "/",
            parts.query,
            *(f"{name}:{headers[name]}" for name in sorted(headers)),
            "",
            names,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
    del headers["host"]  # httpx sends it, the same value
    return headers
