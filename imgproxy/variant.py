"""Source version + transform + negotiated format -> the Variant to send: its strong ETag,
every header of its 200, its ready 304 and, for a rendition, its RenderJob and cache key.

A Variant depends only on things fixed for one version of one URL, so it is built once and a
repeat request is a lookup plus a few comparisons (the whitenoise model).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from imgproxy import hints
from imgproxy.cache import CacheKey
from imgproxy.conditional import cache_control, make_etag, surrogate_key, validator_headers
from imgproxy.facts import SourceInfo, metadata_json
from imgproxy.formats import AS_OUTPUT, OutputFormat
from imgproxy.geometry import resolve_crop
from imgproxy.job import DEFAULT_AVIF_SPEED, DEFAULT_WEBP_EFFORT, RenderJob
from imgproxy.memo import Memo
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.negotiation import MAX_ACCEPT, negotiate
from imgproxy.params import AUTO, Gravity, Query, Transform
from imgproxy.policy import check_frames, check_output
from imgproxy.response import (
    SECURITY_HEADERS,
    content_disposition,
    image_response,
    not_modified,
)
from imgproxy.settings import LimitsSettings
from imgproxy.stores import StoredFile
from imgproxy.stores.base import focal_point
from imgproxy.targets import URL_CHARS, Target, url_chars

if TYPE_CHECKING:  # only their attributes are read here; importing source would load Pillow
    from imgproxy.source import Source
    from imgproxy.watermarks import Mark

PLACEHOLDER_CACHE_CONTROL = "public, max-age=60"
CENTRE = (0.5, 0.5)


class Kind(StrEnum):
    ORIGINAL = "original"
    METADATA = "json"
    RENDITION = "rendition"


@dataclass(frozen=True, slots=True)
class Variant:
    kind: Kind
    etag: str
    headers: tuple[tuple[str, str], ...]  # all of a 200's, security ones too; not Content-Length
    not_modified: ImageResponse
    job: RenderJob | None = None
    key: CacheKey | None = None  # renditions only
    response: ImageResponse | None = None  # metadata only: its JSON depends on the version
    mark: Source | None = None  # wm=: the watermark's judged file, read with the source
    modified: float | None = None  # Last-Modified: the source's, or its mark's if later


class Variants:
    """Builds each Variant once per (URL, source version, negotiated format, status)."""

    def __init__(
        self,
        *,
        cache_control: str,
        avif: bool,
        avif_speed: int = DEFAULT_AVIF_SPEED,
        webp_effort: int = DEFAULT_WEBP_EFFORT,
        client_hints: bool = False,
    ) -> None:
        self.cache_control = cache_control
        self.avif = avif  # whether this Pillow can encode AVIF, for fm=auto
        self.avif_speed = avif_speed
        self.webp_effort = webp_effort
        self.client_hints = client_hints
        self._known: Memo[tuple[object, ...], Variant] = Memo(
            20_000, weigh=_chars, max_weight=URL_CHARS
        )

    def choose(
        self,
        source: Source,
        target: Target,
        request: ImageRequest,
        status: int,
        mark: Mark | None = None,
    ) -> Variant:
        """Raises TooLarge for too many frames in animated output (SPEC §4.1), BadRequest
        for an output larger than the limits or its encoder allow (SPEC §11.1). `mark`:
        the transform's `wm=` watermark, resolved for this request."""
        file, info, query = source.file, source.info, target.query
        t, output, hinted = query.transform, None, None
        if t is not None and not t.metadata:
            output = self._output(t, info, request.header("accept"))
            if self.client_hints and not output.is_placeholder:
                hinted = hints.read(request, source.mount.limits.max_output_dimension)
        ident = _ident(target, file, output, status, mark)
        variant = self._known.get(ident if hinted is None else (*ident, hinted))
        if variant is None:
            mount = source.mount
            variant = build_variant(
                store=mount.name,
                file=file,
                info=info,
                query=_for_source(target, info.size, hinted, mount.limits.max_output_dimension),
                output=output,
                limits=mount.limits,
                decoders=mount.policy.decoders(file.approved),
                caching=self.cache_control if status == 200 else PLACEHOLDER_CACHE_CONTROL,
                avif_speed=self.avif_speed,
                webp_effort=self.webp_effort,
                status=status,
                hinted=hinted is not None,
                mark=mark,
            )
            self._known[ident if hinted is None else (*ident, hinted)] = variant
        return variant

    def _output(self, t: Transform, info: SourceInfo, accept: str | None) -> OutputFormat:
        if isinstance(t.format, OutputFormat):
            return t.format
        if t.format == AUTO:
            # Only MAX_ACCEPT characters count (one more tells negotiate it was cut), so the
            # memo never holds a client's 64 kB header.
            return _negotiate((accept or "")[: MAX_ACCEPT + 1], info.has_alpha, self.avif)
        default = AS_OUTPUT.get(info.format)
        if default is not None:
            return default
        return OutputFormat.PNG if info.has_alpha else OutputFormat.JPEG


def _ident(
    target: Target, file: StoredFile, output: OutputFormat | None, status: int, mark: Mark | None
) -> tuple[object, ...]:
    """Everything a variant depends on but the client hints: the URL, the stored file's
    version and what its store says of it, the format chosen, the status, and the mark's
    version (a replaced mark is a new variant; its name and settings are the URL's and this
    process's, in target.key already)."""
    ident = (target.key, file.version, file.modified, file.approved, file.focal, output, status)
    if mark is None:
        return ident
    marked = mark.source.file
    return (*ident, marked.version, marked.modified, marked.approved)


def _for_source(
    target: Target, size: tuple[int, int], hinted: hints.Hints | None, max_dimension: int
) -> Query:
    """The URL's query for this source: its dialect's sizing (Target.sized) once the size is
    known, then the client hints it used."""
    query = target.query
    t = query.transform
    if t is None:
        return query
    if target.sized is not None:
        t = target.sized(t, size)
    if hinted is not None:
        t = hints.apply(t, hinted, dpr_given=query.dpr_given, max_dimension=max_dimension)
    return query if t is query.transform else dataclasses.replace(query, transform=t)


def _chars(ident: tuple[object, ...], variant: Variant) -> int:
    """A variant's weight: its URL's (the ident's first item is the Target's key) and its
    headers' text, where the stored name comes back (Content-Disposition, twice, the
    non-ASCII escaped: up to 9 characters a character of the name)."""
    key = ident[0]
    assert isinstance(key, tuple)
    return url_chars(key) + sum(len(name) + len(value) for name, value in variant.headers)


@functools.lru_cache(maxsize=1024)
def _negotiate(accept: str, has_alpha: bool, avif: bool) -> OutputFormat:
    return negotiate(accept, has_alpha=has_alpha, avif=avif)


def build_variant(
    *,
    store: str,
    file: StoredFile,
    info: SourceInfo,
    query: Query,
    output: OutputFormat | None,
    limits: LimitsSettings,
    decoders: tuple[str, ...] | None,
    caching: str,
    avif_speed: int = DEFAULT_AVIF_SPEED,
    webp_effort: int = DEFAULT_WEBP_EFFORT,
    status: int = 200,
    hinted: bool = False,
    mark: Mark | None = None,
) -> Variant:
    t = query.transform
    ident = (store, file.path, file.version)
    job, modified = None, file.modified
    if t is None:
        check_frames(info, limits, animated_output=info.frames > 1)
        kind, etag = Kind.ORIGINAL, make_etag(*ident, Kind.ORIGINAL)
        extension, media_type = info.format.lower(), info.media_type
    elif t.metadata:
        kind, etag = Kind.METADATA, make_etag(*ident, Kind.METADATA)
        extension, media_type = "", "application/json"
    else:
        assert output is not None
        job = _job(file, info, t, output, limits, decoders, avif_speed, webp_effort, mark)
        kind, etag = Kind.RENDITION, _rendition_etag(ident, job, mark)
        if job.mark is not None and mark is not None:
            modified = _later(file.modified, mark.source.file.modified)
        extension, media_type = output.value, output.media_type
    vary = [
        name for name, used in (("Accept", t and t.format == AUTO), (hints.VARY, hinted)) if used
    ]
    control = cache_control(caching, immutable=query.version is not None)
    validators = validator_headers(etag, control, surrogate_key(store, file.path), modified, vary)
    ready_304 = not_modified(validators)
    headers = [*validators, ("content-type", media_type)]
    if kind is Kind.ORIGINAL:
        headers.append(("accept-ranges", "bytes"))
    if extension:
        headers.append(("content-disposition", content_disposition(file.filename, extension)))
    headers.extend(SECURITY_HEADERS)
    key, response = None, None
    if job is not None:
        key = CacheKey(surrogate_key(store, file.path), etag.strip('"'), job.output.value)
    if kind is Kind.METADATA:
        original = make_etag(*ident, Kind.ORIGINAL)
        body = metadata_json(info, file.modified, file.approved, original)
        response = image_response(status, body, tuple(headers))
    source_of_mark = mark.source if job is not None and job.mark is not None and mark else None
    return Variant(
        kind, etag, tuple(headers), ready_304, job, key, response, source_of_mark, modified
    )


def _job(
    file: StoredFile,
    info: SourceInfo,
    t: Transform,
    output: OutputFormat,
    limits: LimitsSettings,
    decoders: tuple[str, ...] | None,
    avif_speed: int,
    webp_effort: int,
    mark: Mark | None,
) -> RenderJob:
    """A rendition's job, its transform resolved for this version (the stored focal point,
    the crop in pixels) and judged against the limits before any read (400s)."""
    if t.focal is None and t.gravity is Gravity.FOCAL:  # no fx/fy: the stored point
        # A Python store's point is checked like a sidecar's (inf, NaN, out of range).
        stored = focal_point(*file.focal) if file.focal else None
        t = dataclasses.replace(t, focal=stored or CENTRE)  # in the job and the ETag
    t = resolve_crop(t, info.size)  # in pixels: a crop's spellings share one rendition
    quality = (t.quality or output.default_quality) if output.has_quality else None
    animate = output.animates and info.frames > 1
    check_frames(info, limits, animated_output=animate)
    check_output(info, t, output, limits, animate=animate)
    return RenderJob(
        t,
        output,
        quality,
        decoders,
        animate,
        limits.max_source_pixels,
        max_jpeg_scans=limits.max_jpeg_scans,
        budget=limits.max_render_seconds,
        avif_speed=avif_speed,
        webp_effort=webp_effort,
        max_output=(limits.max_output_dimension, limits.max_output_pixels),
        mark=mark.job() if mark is not None and t.watermark else None,
    )


def _rendition_etag(ident: tuple[str, str, str], job: RenderJob, mark: Mark | None) -> str:
    """Everything that decides a rendition's bytes. The speed and effort change them: part
    of an AVIF's or a WebP's identity (a WebP's only when not libwebp's default, so the
    ETags from before it stay). The mark's version: replacing it changes every rendition
    that carries it (§15.1)."""
    speed = (f"speed={job.avif_speed}",) if job.output is OutputFormat.AVIF else ()
    if job.output is OutputFormat.WEBP and job.webp_effort != DEFAULT_WEBP_EFFORT:
        speed = (f"effort={job.webp_effort}",)
    marked = mark.ident() if mark is not None and job.mark is not None else ()
    return make_etag(
        *ident, job.transform.canonical(), job.output, str(job.quality), *speed, *marked
    )


def _later(one: float | None, other: float | None) -> float | None:
    """The later of two modification times; unknown if either is (no Last-Modified then
    rather than one that a changed mark would not move)."""
    return None if one is None or other is None else max(one, other)
