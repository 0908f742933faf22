"""ImageRequest -> ImageResponse: the stages of SPEC §10, in order, and nothing else.

path (400) -> store (404) -> signature (403) -> params (400) -> stat (404) -> authorize (403)
-> approval and format (403/415) -> limits (413) -> conditional (304) -> decode (422) -> render
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imgproxy import render, timing
from imgproxy.cache import Located
from imgproxy.conditional import (
    RangeNotSatisfiable,
    is_not_modified,
    make_etag,
    parse_range,
)
from imgproxy.errors import (
    Forbidden,
    ImageProxyError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    Undecodable,
)
from imgproxy.formats import declared_size, sniff
from imgproxy.memo import Memo
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.metrics import Metrics
from imgproxy.mounts import Mounted, Placeholder, check_presets, mount_stores
from imgproxy.params import Query, parse_query, split_query
from imgproxy.paths import parse_path
from imgproxy.policy import check_bytes, check_pixels
from imgproxy.render.executor import RenderExecutor
from imgproxy.renditions import Renditions
from imgproxy.response import error_response, image_response
from imgproxy.settings import Settings
from imgproxy.signing import Signer
from imgproxy.source import SourceInfo, read_capped
from imgproxy.stores import Store, StoredFile
from imgproxy.variant import Kind, Variant, build_variant, metadata, output_format

log = logging.getLogger(__name__)

Authorize = Callable[[Any, StoredFile], Awaitable[bool]]

PLACEHOLDER_CACHE_CONTROL = "public, max-age=60"


@dataclass(frozen=True, slots=True)
class Target:
    """An accepted URL: its store, the path inside it and the parsed parameters."""

    key: tuple[str, str]  # the raw path and query it was parsed from
    mount: Mounted
    path: str
    query: Query


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
        self.mounts = mount_stores(settings, stores or {})
        self.executor = RenderExecutor(
            concurrency=settings.limits.render_concurrency, queue=settings.limits.render_queue
        )
        self.metrics = Metrics(
            queue_depth=lambda: self.executor.queued, in_flight=lambda: self.executor.running
        )
        self.renditions = Renditions(settings, self.executor, self.metrics)
        self.accel = settings.cache.accel_redirect
        self.timing = settings.server.timing
        self.known: Memo[tuple[str, str, str], SourceInfo] = Memo(100_000)
        self.targets: Memo[tuple[str, str], Target] = Memo(20_000)
        self.variants: Memo[tuple[object, ...], Variant] = Memo(20_000)
        check_presets(settings)

    async def close(self) -> None:
        self.executor.shutdown()
        await self.renditions.close()
        for mount in self.mounts.values():
            close = getattr(mount.store, "close", None)  # stores holding connections
            if close is not None:
                await close()

    @property
    def renders(self) -> int:
        """Renditions made by this process (tests and benchmarks read it)."""
        return self.metrics.renders

    async def serve(self, request: ImageRequest) -> ImageResponse:
        timings = timing.start() if self.timing else None
        try:
            response = await self._serve(request)
        except ImageProxyError as error:
            response = error_response(error)
        except Exception:
            log.exception("unexpected failure serving %s?%s", request.path, request.query)
            response = error_response(InternalError("the server failed; this is a bug"))
        self.metrics.response(response.status)
        if timings:
            extra = (("server-timing", timing.header(timings)),)
            response = ImageResponse(response.status, response.headers + extra, response.body)
        return response

    async def _serve(self, request: ImageRequest) -> ImageResponse:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.method} is not allowed; use GET or HEAD")
        target = self._target(request.path, request.query)
        mount = target.mount
        try:
            with timing.measure("resolve"):
                file = await mount.store.stat(target.path)
        except NotFound:
            if mount.placeholder is None:
                raise
            return await self._placeholder(mount.placeholder, target, request)
        if self.authorize is not None and not await self.authorize(request.context, file):
            raise Forbidden("you may not see this image")
        source = await self._source(mount, file)
        return await self._respond(source, target, request)

    def _target(self, path: str, query: str) -> Target:
        """Path, store, signature and params: pure functions of the URL and the settings, so
        an accepted URL is judged once and remembered (the hit path then skips all four)."""
        target = self.targets.get((path, query))
        if target is not None:
            return target
        where = parse_path(path)
        mount = self.mounts.get(where.store)
        if mount is None:
            raise NotFound(f"no store named {where.store!r}")
        pairs = split_query(query)
        self.signer.check(path, pairs)
        parsed = parse_query(
            pairs, presets=self.settings.presets, max_dimension=mount.limits.max_output_dimension
        )
        target = self.targets[(path, query)] = Target((path, query), mount, where.path, parsed)
        return target

    async def _placeholder(
        self, placeholder: Placeholder, target: Target, request: ImageRequest
    ) -> ImageResponse:
        file = await placeholder.mount.store.stat(placeholder.path)
        source = await self._source(placeholder.mount, file)
        return await self._respond(source, target, request, status=404)

    async def _source(self, mount: Mounted, file: StoredFile) -> Source:
        """Approval, format and limits, from what is remembered about this version or else
        from its bytes: sniffed first, then only the header parsed (SPEC §4, §10)."""
        known = self.known.get((mount.name, file.path, file.version))
        if known is not None:
            mount.policy.check(known.format, file.approved)
            check_bytes(known.bytes, mount.limits)
            check_pixels((known.width, known.height), mount.limits.max_source_pixels)
            return Source(mount, file, known, None)

        detected: list[str | None] = []

        def judge(head: bytes) -> None:
            detected.append(sniff(head) or render.identify(head))
            mount.policy.check(detected[0], file.approved)
            check_bytes(file.size, mount.limits)

        data = await read_capped(
            mount.store.open(file), limit=mount.limits.max_source_bytes, on_head=judge
        )
        declared = declared_size(detected[0], data)
        if declared is not None:
            check_pixels(declared, mount.limits.max_source_pixels)
        decoders = mount.policy.decoders(file.approved)
        info = await self.executor.run(render.probe, data, decoders, mount.limits.max_source_pixels)
        self.known[(mount.name, file.path, file.version)] = info
        return Source(mount, file, info, data)

    def _variant(
        self, source: Source, target: Target, request: ImageRequest, status: int
    ) -> Variant:
        """The Variant for this URL and source version, built once and then remembered."""
        file, info, t = source.file, source.info, target.query.transform
        output = None
        if t is not None and not t.metadata:
            output = output_format(t, info, request.header("accept"))
        key = (target.key, file.version, file.modified, file.approved, output, status)
        variant = self.variants.get(key)
        if variant is None:
            caching = self.cache_control if status == 200 else PLACEHOLDER_CACHE_CONTROL
            variant = self.variants[key] = build_variant(
                store=source.mount.name,
                file=file,
                info=info,
                query=target.query,
                output=output,
                limits=source.mount.limits,
                decoders=source.mount.policy.decoders(file.approved),
                caching=caching,
            )
        return variant

    async def _respond(
        self, source: Source, target: Target, request: ImageRequest, *, status: int = 200
    ) -> ImageResponse:
        variant = self._variant(source, target, request, status)
        if status == 200 and is_not_modified(
            etag=variant.etag,
            last_modified=source.file.modified,
            if_none_match=request.header("if-none-match"),
            if_modified_since=request.header("if-modified-since"),
        ):
            return variant.not_modified
        if variant.kind is Kind.ORIGINAL:
            return await self._original(source, request, variant, status)
        if variant.kind is Kind.METADATA:
            file = source.file
            original = make_etag(source.mount.name, file.path, file.version, Kind.ORIGINAL)
            return image_response(status, metadata(file, source.info, original), variant.headers)
        assert variant.job is not None
        assert variant.key is not None
        found = await self.renditions.get(
            variant.key, variant.job, lambda: self._bytes(source), modified=source.file.modified
        )
        if isinstance(found, Located) and status == 200:
            # After every check above: nginx only ever sends what we would have sent.
            redirect = (("x-accel-redirect", self.accel + found.path), ("content-length", "0"))
            return ImageResponse(status, (*variant.headers, *redirect))
        rendition = await self.renditions.bytes_of(variant.key, found)
        if rendition is None:  # evicted between the lookup and now
            raise Overloaded("the cached rendition vanished; retry")
        return image_response(status, rendition.body, variant.headers)

    async def _original(
        self, source: Source, request: ImageRequest, variant: Variant, status: int
    ) -> ImageResponse:
        data = await self._bytes(source)
        if status != 200:
            return image_response(status, data, variant.headers)
        try:
            wanted = parse_range(
                request.header("range"),
                len(data),
                if_range=request.header("if-range"),
                etag=variant.etag,
                last_modified=source.file.modified,
            )
        except RangeNotSatisfiable:
            unsatisfied = ("content-range", f"bytes */{len(data)}")
            return image_response(416, b"", (unsatisfied, *variant.headers))
        if wanted is None:
            return image_response(200, data, variant.headers)
        content_range = ("content-range", wanted.content_range(len(data)))
        part = data[wanted.start : wanted.end + 1]
        return image_response(206, part, (*variant.headers, content_range))

    async def _bytes(self, source: Source) -> bytes:
        return source.data if source.data is not None else await self._read(source)

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
