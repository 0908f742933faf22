"""The Settings tree -> the config reference (every key: type, default, meaning), as Markdown.

Types and defaults are read from the dataclasses themselves and the meanings are looked up
here by dotted key, so a key added without a meaning fails its test, and `config/REFERENCE.md`
(`imgproxy config --reference`) cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any

from imgproxy.settings import (
    SECTIONS,
    ImgproxyDialectSettings,
    ThumborDialectSettings,
    WatermarkSettings,
)
from imgproxy.store_options import STORE_KINDS

MEANINGS = {
    "server.host": "address `imgproxy serve` listens on",
    "server.port": "port `imgproxy serve` listens on (0..65535)",
    "server.workers": "server processes, each with its own socket on the port (SO_REUSEPORT)",
    "server.demo": "the demo page at `/`; it signs URLs for the images it lists: not in production",
    "server.timing": "a `Server-Timing` header (resolve, fetch, decode, render, encode, cache)",
    "server.access_log": "a log line per image request: status, store, bytes, tier, render ms",
    "server.log_level": "`debug`, `info`, `warning` or `error`",
    "server.log_format": "`text`, or `json` for one object per line",
    "server.max_headers": "headers in one request head to `imgproxy serve`: 400 and close beyond",
    "server.max_connections": (
        "open client connections of one `imgproxy serve` worker: past it, the one that has"
        " waited longest for a request head (idle or slow) is closed"
    ),
    "server.ready_timeout": "seconds each store and cache tier has to answer `/readyz` (else 503)",
    "server.client_hints": (
        "`Sec-CH-DPR`/`DPR` multiplies a rendition's box (unless its URL names `dpr`) and"
        " `Sec-CH-Width`/`Width` bounds its width; answers then name them in `Vary`"
    ),
    "security.keys": "HMAC keys; the first signs, each verifies (rotation); empty: signing off",
    "security.allow_unsigned": (
        "with no `keys`, `imgproxy serve` on a host other than loopback starts only when this"
        " is true"
    ),
    "security.signature_length": "characters of `s` (16..43)",
    "security.allow_unsigned_presets": "URLs with only `p` (and `v`) need no signature",
    "security.sign_originals": "originals need a signature too",
    "security.debug": "a 403 shows the message the server signs; never in production",
    "policy.image_formats": "formats opened for any file (Pillow names)",
    "policy.approved_image_formats": (
        "formats opened only for approved files; `*`: every format; `HEIF` too where the"
        " `heif` extra is installed"
    ),
    "limits.max_source_bytes": "source bytes; larger: 413",
    "limits.max_source_pixels": (
        "pixels the header declares (all frames, for animation); more: 413. In a host app,"
        " Pillow's own guard (the host's `Image.MAX_IMAGE_PIXELS`) still refuses more than"
        " twice its limit"
    ),
    "limits.max_output_dimension": "largest `w`/`h` after `dpr`, and any output side; larger: 400",
    "limits.max_output_pixels": "pixels of an output (each frame); more: 400, before any read",
    "limits.max_frames": "frames of an animated output; more: 413 (counted no further)",
    "limits.render_concurrency": "render slots per worker (threads); default: cores / workers",
    "limits.render_queue": "requests of one store waiting for a slot, holding no bytes; more: 503",
    "limits.inflight_bytes": "source and decoder bytes held at once (renders, originals, inspect)",
    "limits.max_jpeg_scans": "scans of a progressive JPEG (each walks the whole image); more: 413",
    "limits.max_render_seconds": "one render's time budget; past it: 422",
    "cache.memory_bytes": "memory tier size (LRU); 0: off",
    "cache.disk_path": "disk tier folder, shared by the processes using it; empty: off",
    "cache.disk_bytes": "disk tier size as `du` counts it (blocks, inodes, folders); LRU evicted",
    "cache.redis_url": "Redis tier and cross-instance render lock (`redis` extra); empty: off",
    "cache.redis_ttl": "seconds a rendition stays in Redis",
    "cache.redis_bytes": "what the fleet keeps in Redis (least recently used evicted)",
    "cache.redis_concurrency": (
        "calls one worker has in flight to Redis for requests: past it a read is a miss, a "
        "write is skipped and a render is local, never a wait"
    ),
    "cache.cache_control": "`Cache-Control` of 200s (`v=` URLs: a year, immutable)",
    "cache.accel_redirect": "location prefix for disk hits sent by nginx (`X-Accel-Redirect`)",
    "cache.lock_seconds": "a crashed renderer's fleet-wide render lock lapses after this",
    "cache.s3_bucket": "object-store rendition tier below Redis (`s3` extra); empty: off",
    "cache.s3_prefix": "key prefix of the object-store tier",
    "cache.s3_endpoint_url": "S3-compatible endpoint (MinIO, R2, SeaweedFS); empty: AWS",
    "cache.s3_region": "the object-store tier's region",
    "cache.s3_access_key_id": "the tier's credentials; empty: the AWS environment's",
    "cache.s3_secret_access_key": "the tier's secret (set it from the environment)",
    "cache.s3_bytes": "what the fleet keeps in the bucket (oldest deleted by the tier's sweeps)",
    "cache.s3_max_age": "seconds an object is served and kept; back it with a lifecycle rule",
    "cache.s3_concurrency": (
        "GETs and PUTs one worker has in flight to the bucket: past it a read is a miss and a "
        "write is skipped, never a wait"
    ),
    "render.avif_speed": "AVIF encoder speed 0..10 (8: ~5x faster than 6, ~2 % more bytes)",
    "render.webp_effort": (
        "WebP encoder effort (libwebp's method) 0..6; 2: 41 % of 4's CPU, +5 % bytes, lower SSIM"
    ),
    "render.decode_linger": (
        "seconds a decoded source asked as a set (renditions at once) is kept for more; 0: off"
    ),
    "render.linger_bytes": "most bytes of decoded sources kept past their renders",
    "cache.purge_urls": "HTTP caches sent `PURGE` + `xkey-purge` by `imgproxy purge`",
    "stores.NAME.kind": "`fs`, `sql`, `http` or `s3`",
    "stores.NAME.approved": "the approval state of files with none of their own",
    "stores.NAME.placeholder": "image served (status 404) for a missing file",
    "stores.NAME.fs.root": "the folder, relative to the config file's",
    "stores.NAME.sql.url": "`sqlite:///rel.db`, `sqlite:////abs.db` or `postgresql://...`",
    "stores.NAME.sql.table": "the table of images",
    "stores.NAME.sql.key_column": "the column the URL path is matched against",
    "stores.NAME.sql.data_column": "the BLOB / bytea column",
    "stores.NAME.sql.updated_column": "modification time (naive: UTC); part of the version",
    "stores.NAME.sql.approved_column": "per-row approval (boolean); none: the store's `approved`",
    "stores.NAME.sql.focal_x_column": "the subject's x as a fraction 0..1, for `g=focal`",
    "stores.NAME.sql.focal_y_column": "the subject's y as a fraction 0..1, for `g=focal`",
    "stores.NAME.sql.timeout": "seconds for a call: connecting, pool wait, statement (504 past it)",
    "stores.NAME.http.base_url": "the origin; the path is appended",
    "stores.NAME.http.timeout": "seconds for a whole request, body included (504 past it)",
    "stores.NAME.http.connect_timeout": "seconds to connect",
    "stores.NAME.http.allowed_hosts": "host globs every hop must match (e.g. `*.example.com`)",
    "stores.NAME.http.allow_private_networks": "allow loopback, private and link-local addresses",
    "stores.NAME.http.allowed_networks": "networks allowed despite the SSRF rules (CIDR)",
    "stores.NAME.s3.bucket": "the bucket (`s3` extra)",
    "stores.NAME.s3.prefix": "keys are prefix + path; a path never climbs out of it",
    "stores.NAME.s3.endpoint_url": "S3-compatible endpoint (MinIO, R2, SeaweedFS); empty: AWS",
    "stores.NAME.s3.region": "the bucket's region",
    "stores.NAME.s3.access_key_id": "this store's account; empty: the AWS environment's",
    "stores.NAME.s3.secret_access_key": "this store's secret (set it from the environment)",
    "stores.NAME.s3.approved_metadata": "`x-amz-meta-<this>: true|false` overrides `approved`",
    "stores.NAME.s3.timeout": "seconds for a whole request (504 past it)",
    "watermarks.NAME.store": "the store the mark is read from, approved and limited like a source",
    "watermarks.NAME.path": "the mark's path in that store; its version is in every marked ETag",
    "watermarks.NAME.position": "a gravity: center, n, s, e, w, ne, nw, se, sw",
    "watermarks.NAME.opacity": "0..1",
    "watermarks.NAME.scale": "the mark's width as a fraction of the output's; 0: its own size",
    "watermarks.NAME.margin": "output pixels from the edges",
    "dialects.thumbor.store": "where thumbor URLs' image paths resolve (`/thumbor/...`)",
    "dialects.thumbor.security_key": "thumbor's SECURITY_KEY; empty: only `/unsafe/` URLs",
    "dialects.thumbor.allow_unsafe": "accept `/unsafe/` thumbor URLs",
    "dialects.imgproxy.store": "where imgproxy URLs' sources resolve (`/imgproxy/...`)",
    "dialects.imgproxy.keys": "imgproxy's IMGPROXY_KEY values (hex); several for rotation",
    "dialects.imgproxy.salts": "imgproxy's IMGPROXY_SALT values (hex), one per key",
    "dialects.imgproxy.allow_insecure": "accept `/insecure/` imgproxy URLs",
    "dialects.imgproxy.signature_size": "digest bytes a signature keeps (IMGPROXY_SIGNATURE_SIZE)",
    "dialects.imgproxy.watermark": "the `[watermarks]` entry imgproxy's `watermark` option draws",
}

SHARED_STORE_KEYS = (("kind", "string", "required"), ("approved", "boolean", "false"))
PLACEHOLDER = ("placeholder", "string", "none")


def entries() -> Iterator[tuple[str, str, str]]:
    """(dotted key, type, default) of every key a config may hold."""
    for section, cls in SECTIONS.items():
        yield from _fields(section, cls)
    yield from _fields("watermarks.NAME", WatermarkSettings)
    yield from _fields("dialects.thumbor", ThumborDialectSettings)
    yield from _fields("dialects.imgproxy", ImgproxyDialectSettings)
    for name, kind, default in (*SHARED_STORE_KEYS, PLACEHOLDER):
        yield f"stores.NAME.{name}", kind, default
    for kind, options in STORE_KINDS.items():
        yield from _fields(f"stores.NAME.{kind}", options)


def markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the Settings tree by `imgproxy config --reference`; a test checks",
        "this copy. Every key can also be set from the environment as",
        "`IMGPROXY_<SECTION>__<KEY>` (lists: JSON or comma separated). A store table may also",
        "override any `policy` or `limits` key for its files (`[stores.avatars]",
        "max_source_bytes = 1048576`). `[presets]` maps a name to a query string.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, kind, default in entries():
        shown, meaning = key, MEANINGS[key]
        for store_kind in STORE_KINDS:  # `stores.NAME.fs.root` is written `stores.NAME.root`
            if key.startswith(f"stores.NAME.{store_kind}."):
                shown = "stores.NAME." + key.rsplit(".", 1)[1]
                meaning = f"(`{store_kind}`) {meaning}"
        lines.append(f"| `{shown}` | {kind} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _fields(prefix: str, cls: type[Any]) -> Iterator[tuple[str, str, str]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f"{prefix}.{f.name}", _type(hints[f.name]), _default(f)


def _type(hint: Any) -> str:
    if typing.get_origin(hint) is types.UnionType:
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return _type(inner) + " or empty"
    if typing.get_origin(hint) is tuple:
        return "list of strings"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names[hint]


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return "cores / workers" if f.name == "render_concurrency" else repr(f.default_factory())
    if f.default is dataclasses.MISSING:
        return "required"
    value = f.default
    if f.name == "approved_image_formats":  # the same page wherever it is generated
        value = tuple(v for v in value if v != "HEIF")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'`"{value}"`'
    if value is None:
        return "none"
    return f"{value:_}" if isinstance(value, int) and value >= 100_000 else str(value)
