"""ImageRequest -> ImageResponse: the stages of SPEC §10, in order, and nothing else.

path (400) -> store (404) -> signature (403) -> params (400) -> stat (404) -> authorize (403)
-> approval and format (403/415) -> limits (413) -> conditional (304) -> decode (422) -> render
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache

from imgproxy import render
from imgproxy.cache import Rendition, TieredCache
from imgproxy.cache.flight import SingleFlight
from imgproxy.cache.memory import MemoryTier
from imgproxy.conditional import (
    RangeNotSatisfiable,
    cache_control,
    http_date,
    is_not_modified,
    make_etag,
    parse_range,
)
from imgproxy.errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    ImageProxyError,
    MethodNotAllowed,
    NotFound,
    Undecodable,
)
from imgproxy.formats import AS_OUTPUT, OutputFormat, sniff
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.negotiation import negotiate
from imgproxy.params import AUTO, Query, Transform, parse_query, split_query
from imgproxy.paths import parse_path
from imgproxy.policy import FormatPolicy, check_bytes, check_frames, check_pixels
from imgproxy.render.executor import RenderExecutor
from imgproxy.response import (
    content_disposition,
    error_response,
    image_response,
    not_modified,
)
from imgproxy.settings import LimitsSettings, Settings
from imgproxy.signing import Signer
from imgproxy.source import SourceInfo, read_capped
from imgproxy.stores import Store, StoredFile, build_store
from imgproxy.stores.filesystem import FileSystemStore

Authorize = Callable[[Any, StoredFile], Awaitable[bool]]

PLACEHOLDER_CACHE_CONTROL = "public, max-age=60"


@dataclass(frozen=True, slots=True)
class Mounted:
    """A store with everything decided for it once at start-up."""

    name: str
    store: Store
    policy: FormatPolicy
    limits: LimitsSettings
    placeholder: Placeholder | None = None


@dataclass(frozen=True, slots=True)
class Placeholder:
    """The image a store answers 404s with (SPEC §5), served like any approved file."""

    mount: Mounted
    path: str


ORIGINAL, METADATA, RENDITION = "original", "metadata", "rendition"


@dataclass(frozen=True, slots=True)
class Variant:
    etag: str
    kind: str  # ORIGINAL, METADATA or RENDITION
    job: render.RenderJob | None = None
    vary: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    mount: Mounted
    file: StoredFile
    info: SourceInfo
    data: bytes | None  # read already (first sight of this version), else None


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        stores: Mapping[str, Store] | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.settings = settings
        self.cache_control = settings.cache.cache_control
        self.signer = Signer(settings.security)
        self.authorize = authorize
        self.mounts = _mount_stores(settings, stores or {})
        self.memory = MemoryTier(settings.cache.memory_bytes)
        self.cache = TieredCache([self.memory])
        self.executor = RenderExecutor(
            concurrency=settings.limits.render_concurrency, queue=settings.limits.render_queue
        )
        self.flights: SingleFlight[Rendition] = SingleFlight()
        self.known: LRUCache[tuple[str, str, str], SourceInfo] = LRUCache(maxsize=100_000)
        self.renders = 0  # renditions made by this process, for tests and metrics
        for name in settings.presets:
            _check_preset(name, settings)

    async def serve(self, request: ImageRequest) -> ImageResponse:
        try:
            return await self._serve(request)
        except ImageProxyError as error:
            return error_response(error)

    async def _serve(self, request: ImageRequest) -> ImageResponse:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.method} is not allowed; use GET or HEAD")
        where = parse_path(request.path)
        mount = self.mounts.get(where.store)
        if mount is None:
            raise NotFound(f"no store named {where.store!r}")
        pairs = split_query(request.query)
        self.signer.check(request.path, pairs)
        query = parse_query(
            pairs,
            presets=self.settings.presets,
            max_dimension=mount.limits.max_output_dimension,
        )
        try:
            file = await mount.store.stat(where.path)
        except NotFound:
            if mount.placeholder is None:
                raise
            return await self._placeholder(mount.placeholder, query, request)
        if self.authorize is not None and not await self.authorize(request.context, file):
            raise Forbidden("you may not see this image")
        source = await self._source(mount, where.store, file)
        return await self._respond(source, where.store, query, request)

    async def _placeholder(
        self, placeholder: Placeholder, query: Query, request: ImageRequest
    ) -> ImageResponse:
        mount = placeholder.mount
        file = await mount.store.stat(placeholder.path)
        source = await self._source(mount, mount.name, file)
        return await self._respond(
            source, mount.name, query, request, status=404, caching=PLACEHOLDER_CACHE_CONTROL
        )

    async def _source(self, mount: Mounted, store: str, file: StoredFile) -> Source:
        """Approval, format and limits, from what is remembered about this version or else
        from its bytes: sniffed first, then only the header parsed (SPEC §4, §10)."""
        known = self.known.get((store, file.path, file.version))
        if known is not None:
            mount.policy.check(known.format, file.approved)
            check_bytes(known.bytes, mount.limits)
            check_pixels(known, mount.limits)
            return Source(mount, file, known, None)

        def judge(head: bytes) -> None:
            detected = sniff(head) or render.identify(head)
            mount.policy.check(detected, file.approved)
            check_bytes(file.size, mount.limits)

        data = await read_capped(
            mount.store.open(file), limit=mount.limits.max_source_bytes, on_head=judge
        )
        decoders = mount.policy.decoders(file.approved)
        info = await self.executor.run(render.probe, data, decoders)
        check_pixels(info, mount.limits)
        self.known[(store, file.path, file.version)] = info
        return Source(mount, file, info, data)

    def _variant(self, source: Source, store: str, query: Query, request: ImageRequest) -> Variant:
        """What will be sent for this request, and the strong ETag naming exactly that."""
        file, info, t = source.file, source.info, query.transform
        ident = (store, file.path, file.version)
        if t is None:
            check_frames(info, source.mount.limits, animated_output=info.frames > 1)
            return Variant(make_etag(*ident, "original"), ORIGINAL)
        if t.metadata:
            return Variant(make_etag(*ident, "json"), METADATA)
        output = self._output_format(t, info, request)
        quality = (t.quality or render.default_quality(output)) if output.has_quality else None
        animate = output.animates and info.frames > 1
        check_frames(info, source.mount.limits, animated_output=animate)
        job = render.RenderJob(
            t, output, quality, source.mount.policy.decoders(file.approved), animate
        )
        etag = make_etag(*ident, t.canonical(), output, str(quality))
        return Variant(etag, RENDITION, job, vary=t.format == AUTO)

    async def _respond(
        self,
        source: Source,
        store: str,
        query: Query,
        request: ImageRequest,
        *,
        status: int = 200,
        caching: str | None = None,
    ) -> ImageResponse:
        variant = self._variant(source, store, query, request)
        file = source.file
        immutable = query.version is not None
        headers = [
            ("etag", variant.etag),
            ("cache-control", caching or cache_control(self.cache_control, immutable=immutable)),
            ("surrogate-key", make_etag(store, file.path).strip('"')),
        ]
        if file.modified is not None:
            headers.append(("last-modified", http_date(file.modified)))
        if variant.vary:
            headers.append(("vary", "Accept"))
        if status == 200 and is_not_modified(
            etag=variant.etag,
            last_modified=file.modified,
            if_none_match=request.header("if-none-match"),
            if_modified_since=request.header("if-modified-since"),
        ):
            return not_modified(headers)
        if variant.kind is ORIGINAL:
            return await self._original(source, request, headers, status)
        if variant.kind is METADATA:
            body = _metadata(source, make_etag(store, file.path, file.version, "original"))
            return image_response(status, body, [*headers, ("content-type", "application/json")])
        assert variant.job is not None
        rendition = await self._rendition(variant.etag, source, variant.job)
        headers += [
            ("content-type", rendition.media_type),
            ("content-disposition", content_disposition(file.filename, variant.job.output)),
        ]
        return image_response(status, rendition.body, headers)

    def _output_format(self, t: Transform, info: SourceInfo, request: ImageRequest) -> OutputFormat:
        if isinstance(t.format, OutputFormat):
            return t.format
        if t.format == AUTO:
            accept = request.header("accept") or ""
            return negotiate(accept, has_alpha=info.has_alpha, avif=render.AVIF_AVAILABLE)
        default = AS_OUTPUT.get(info.format)
        if default is not None:
            return default
        return OutputFormat.PNG if info.has_alpha else OutputFormat.JPEG

    async def _original(
        self, source: Source, request: ImageRequest, headers: list[tuple[str, str]], status: int
    ) -> ImageResponse:
        data = source.data if source.data is not None else await self._read(source)
        headers += [
            ("content-type", source.info.media_type),
            ("accept-ranges", "bytes"),
            (
                "content-disposition",
                content_disposition(source.file.filename, source.info.format.lower()),
            ),
        ]
        if status != 200:
            return image_response(status, data, headers)
        try:
            wanted = parse_range(
                request.header("range"),
                len(data),
                if_range=request.header("if-range"),
                etag=headers[0][1],
                last_modified=source.file.modified,
            )
        except RangeNotSatisfiable:
            return image_response(416, b"", [("content-range", f"bytes */{len(data)}"), *headers])
        if wanted is None:
            return image_response(200, data, headers)
        headers.append(("content-range", wanted.content_range(len(data))))
        return image_response(206, data[wanted.start : wanted.end + 1], headers)

    async def _rendition(self, key: str, source: Source, job: render.RenderJob) -> Rendition:
        cached = await self.cache.get(key)
        if cached is not None:
            return cached

        async def make() -> Rendition:
            data = source.data if source.data is not None else await self._read(source)
            body = await self.executor.run(render.render, data, job)
            self.renders += 1
            rendition = Rendition(body, job.output.media_type)
            await self.cache.put(key, rendition)
            return rendition

        return await self.flights.run(key, make)

    async def _read(self, source: Source) -> bytes:
        def same_format(head: bytes) -> None:
            if (sniff(head) or render.identify(head)) != source.info.format:
                # The bytes changed under an unchanged version: refuse rather than guess.
                raise Undecodable("the source changed while it was being read")

        return await read_capped(
            source.mount.store.open(source.file),
            limit=source.mount.limits.max_source_bytes,
            on_head=same_format,
        )


def _metadata(source: Source, original_etag: str) -> bytes:
    """SPEC §5.1, from the header facts already known: no decode."""
    info, file = source.info, source.file
    modified = (
        datetime.fromtimestamp(file.modified, UTC).isoformat()
        if file.modified is not None
        else None
    )
    return json.dumps(
        {
            "width": info.width,
            "height": info.height,
            "format": info.format.lower(),
            "frames": info.frames,
            "bytes": info.bytes,
            "approved": file.approved,
            "modified": modified,
            "etag": original_etag,
        }
    ).encode()


def _mount_stores(settings: Settings, given: Mapping[str, Store]) -> dict[str, Mounted]:
    mounts = {}
    for name, config in settings.stores.items():
        policy = FormatPolicy.from_settings(config.policy)
        placeholder = None
        if config.placeholder is not None:
            folder = FileSystemStore(config.placeholder.parent, approved=True)
            own = Mounted(f"{name}.placeholder", folder, policy, config.limits)
            placeholder = Placeholder(own, config.placeholder.name)
        store = given.get(name) or build_store(config, settings)
        mounts[name] = Mounted(name, store, policy, config.limits, placeholder)
    return mounts


def _check_preset(name: str, settings: Settings) -> None:
    try:
        parse_query(
            split_query(f"p={name}"),
            presets=settings.presets,
            max_dimension=settings.limits.max_output_dimension,
        )
    except BadRequest as exc:
        raise ConfigError(f"presets.{name}: {exc.detail}") from None
