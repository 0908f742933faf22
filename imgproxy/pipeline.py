"""ImageRequest -> ImageResponse: the stages of SPEC §10, in order, and nothing else.

path (400) -> store (404) -> signature (403) -> params (400) -> stat (404) -> authorize (403)
-> approval and format (403/415) -> limits (413) -> conditional (304) -> decode (422) -> render

A `wm=` watermark's mark is stat'ed and judged with the source (its own 404, 403, 415, 413):
its version is part of the rendition's ETag, so the conditional stage needs it.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from imgproxy import logs, render, timing
from imgproxy.cache import Located, Rendition
from imgproxy.conditional import is_not_modified
from imgproxy.errors import (
    Forbidden,
    ImageProxyError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    SourceChanged,
)
from imgproxy.job import RenderJob
from imgproxy.messages import ImageRequest, ImageResponse
from imgproxy.mounts import Mounted
from imgproxy.response import (
    accel_response,
    error_response,
    original_response,
    ready_response,
)
from imgproxy.services import Services
from imgproxy.source import Source
from imgproxy.stores import StoredFile
from imgproxy.targets import Target
from imgproxy.variant import Kind, Variant
from imgproxy.watermarks import Mark

log = logging.getLogger(__name__)

ACCEL_OPT_IN = "x-imgproxy-accel"
SOURCE_CHANGE_RETRIES = 2  # then the 503 (Retry-After) of SourceChanged

# Recent stats: (store name, path) -> (time.perf_counter() as the stat began, store, result).
# A request that arrived before a stat began may take its result: the answer then shows the
# source as it was after the request arrived, so it is never stale (SPEC §6), and requests
# read from the network in one batch share one stat. Useful for microseconds; bounded.
_RECENT: dict[tuple[str, str], tuple[float, object, StoredFile]] = {}
RECENT_LIMIT = 1024


async def serve(
    services: Services, request: ImageRequest, *, arrived: float | None = None
) -> ImageResponse:
    """Never raises: every failure becomes its SPEC §5 error response. `arrived` is the
    time.perf_counter() by which the server had the whole request head, if it knows it."""
    began = time.perf_counter()
    timings = timing.start() if services.timing else None
    noted = logs.begin() if services.access_log else None
    try:
        response = await _retried(services, request, arrived)
    except ImageProxyError as error:
        response = error_response(error)
    except Exception:
        log.exception("unexpected failure serving %s?%s", request.path, request.query)
        response = error_response(InternalError("the server failed; this is a bug"))
    seconds = time.perf_counter() - began
    services.metrics.response(response.status, seconds)
    if noted is not None:
        _log_access(request, response, noted, seconds)
    if timings:
        extra = (("server-timing", timing.header(timings)),)
        response = dataclasses.replace(response, headers=response.headers + extra)
    return response


def _log_access(
    request: ImageRequest, response: ImageResponse, noted: dict[str, object], seconds: float
) -> None:
    headers = dict(response.headers)
    logs.access(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "status": response.status,
            "client": request.client[0] if request.client else None,
            "user_agent": request.header("user-agent"),
            "store": request.path.split("/", 2)[1] if request.path.count("/") > 1 else None,
            "bytes": int(headers.get("content-length", len(response.body))),
            "tier": noted.get("tier"),
            "render_ms": noted.get("render_ms"),
            "ms": round(seconds * 1000, 2),
        }
    )


async def _retried(
    services: Services, request: ImageRequest, arrived: float | None
) -> ImageResponse:
    """A source rewritten while it was read is judged again from its new version: its
    stat, facts, ETag and cache key all change, so only the whole sequence can retry, and
    with a stat of its own."""
    for _ in range(SOURCE_CHANGE_RETRIES):
        try:
            return await _stages(services, request, arrived)
        except SourceChanged:
            arrived = None
    return await _stages(services, request, None)


async def _stages(
    services: Services, request: ImageRequest, arrived: float | None
) -> ImageResponse:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{request.method} is not allowed; use GET or HEAD")
    target = services.targets.judge(request.path, request.query)  # 400, 404, 403, 400
    mount, file, status = await _resolve(target, arrived)  # 404, or the store's placeholder
    if services.authorize is not None and not await services.authorize(request, file):
        raise Forbidden("you may not see this image")
    source = await services.sources.learn(mount, file)  # 403, 415, 413
    mark = await _mark(services, target, arrived)  # the wm= mark: as a source's, 404 ... 413
    variant = services.variants.choose(source, target, request, status, mark)  # 413 (frames)
    if status == 200 and _not_modified(variant, request):
        return variant.not_modified
    if variant.kind is Kind.ORIGINAL:
        return await _original(services, source, variant, request, status)
    if variant.kind is Kind.METADATA:  # built with the variant, from the header facts
        assert variant.response is not None
        return variant.response
    return await _rendition(services, source, variant, request, status)  # 422, then render


async def _resolve(target: Target, arrived: float | None) -> tuple[Mounted, StoredFile, int]:
    """The store's cheap metadata call, or one begun after the request arrived; a missing
    file is the placeholder's 404 if the store has one (SPEC §5), served by the same stages."""
    mount = target.mount
    try:
        with timing.measure("resolve"):
            return mount, await _stat_since(mount, target.path, arrived), 200
    except NotFound:
        if mount.placeholder is None:
            raise
        own = mount.placeholder
        return own.mount, await own.mount.store.stat(own.path), 404


async def _mark(services: Services, target: Target, arrived: float | None) -> Mark | None:
    """The transform's `[watermarks]` entry with its file stat'ed (sharing recent stats as
    the source does) and judged by its own store's policy and limits (SPEC §15.1)."""
    t = target.query.transform
    if t is None or t.watermark is None or t.metadata:
        return None
    config = services.settings.watermarks[t.watermark]
    mount = services.mounts[config.store]
    try:
        file = await _stat_since(mount, config.path, arrived)
    except NotFound:
        raise NotFound(f"the mark of watermark {t.watermark!r} is missing") from None
    return Mark(t.watermark, config, await services.sources.learn(mount, file))


async def _stat_since(mount: Mounted, path: str, arrived: float | None) -> StoredFile:
    """A stat begun after the request arrived (another request's, see _RECENT), or a new one."""
    recent = _RECENT.get((mount.name, path))
    if recent and arrived is not None and arrived < recent[0] and recent[1] is mount.store:
        return recent[2]
    return await _stat(mount, path)


async def _stat(mount: Mounted, path: str) -> StoredFile:
    began = time.perf_counter()
    file = await mount.store.stat(path)
    if len(_RECENT) >= RECENT_LIMIT:
        _RECENT.clear()
    _RECENT[(mount.name, path)] = (began, mount.store, file)
    return file


def _not_modified(variant: Variant, request: ImageRequest) -> bool:
    return is_not_modified(
        etag=variant.etag,
        last_modified=variant.modified,
        if_none_match=request.header("if-none-match"),
        if_modified_since=request.header("if-modified-since"),
    )


async def _original(
    services: Services, source: Source, variant: Variant, request: ImageRequest, status: int
) -> ImageResponse:
    """The source's bytes streamed from its store as the client takes them: a client that
    never reads holds one piece of the in-flight budget, never the file (SPEC §11.1). The
    first piece is read here, so a file gone or changed since its stat still gets its own
    answer (404, SourceChanged's retry), and so is all of one that fits in a piece; a
    change seen later cuts the connection, never completing a wrong body. A HEAD reads
    nothing."""
    response, wanted = original_response(
        status,
        source.info.bytes,
        variant.headers,
        range_header=request.header("range"),
        if_range=request.header("if-range"),
        etag=variant.etag,
        last_modified=source.file.modified,
    )
    if wanted is None or request.method == "HEAD":
        return response
    pieces = services.sources.stream(source, wanted.start, wanted.end)
    try:
        first = await anext(pieces, b"")
        if len(first) == wanted.end - wanted.start + 1:  # all of it: the store's last checks
            await anext(pieces, None)
            return dataclasses.replace(response, body=first)
    except BaseException:
        await pieces.aclose()
        raise
    return dataclasses.replace(response, body=first, rest=pieces)


async def _rendition(
    services: Services, source: Source, variant: Variant, request: ImageRequest, status: int
) -> ImageResponse:
    assert variant.key is not None
    found = await services.cache.get_or_make(
        variant.key,
        lambda: _render(services, source, variant),
        locate=_accel(services, request, status),
    )
    if isinstance(found, Located):
        return accel_response(status, variant.headers, services.accel + found.path)
    return ready_response(found, status, variant.headers)


def _accel(services: Services, request: ImageRequest, status: int) -> bool:
    """Whether nginx should send a disk hit itself (X-Accel-Redirect): when configured, for a
    200 (a placeholder's 404 carries its bytes), and only where the nginx location in front
    asks for it with `X-Imgproxy-Accel: on`. A location that caches must not: nginx never
    stores a redirected response, so its cache would stay empty (config/nginx.conf)."""
    return bool(services.accel) and status == 200 and request.header(ACCEL_OPT_IN) == "on"


async def _render(services: Services, source: Source, variant: Variant) -> Rendition:
    """Decode (422) and render, run once per rendition by the cache. The source is read only
    once a slot of its store is granted: 503 past the queue, before any byte is read (SPEC
    §11); a render thread is taken for the CPU work alone, so a stalled store holds none."""
    job = variant.job
    assert job is not None
    if job.transform.focal is None:  # g=smart: the point found once per source version
        job = await _smart(services, source, job)
    if services.decodes.shares(job):  # one decode per version and DCT scale (sharing.py)
        rendered, fetch = await services.decodes.render(source, job)
    else:
        rendered, fetch = await _alone(services, source, job, variant.mark)
    if rendered.smart is not None:
        await services.sources.keep_smart_point(source, rendered.smart)
    rendered_in = sum(rendered.timings.values())  # its decode (if its own), render, encode
    services.metrics.rendered(fetch=fetch, render=rendered_in)
    logs.note("render_ms", round(rendered_in * 1000, 2))
    timing.record("fetch", fetch)
    for stage, seconds in rendered.timings.items():
        timing.record(stage, seconds)
    return Rendition(rendered.body, job.output.media_type, variant.modified)


async def _alone(
    services: Services, source: Source, job: RenderJob, mark: Source | None
) -> tuple[render.Rendered, float]:
    """An animation, placeholder, g=smart analysis or watermark (whose mark is read in the
    same slot): its own decode in its own slot, whose
    share of limits.inflight_bytes is the render's working memory: source, decoder buffers
    and output, estimated from the header facts (SPEC §11.1)."""
    share = render.working_bytes(source.info, job)
    async with services.executor.slot(share, lane=source.mount.name) as slot:
        began = time.perf_counter()
        data = await services.sources.read(source)
        drawn = await services.sources.read(mark) if mark else None  # wm=
        fetched = time.perf_counter()
        rendered = await slot.within(job.budget, render.render, data, job, drawn)
    services.metrics.decoded()
    return rendered, fetched - began


async def _smart(services: Services, source: Source, job: RenderJob) -> RenderJob:
    """The job with the version's g=smart point if any process found it already (then
    this render crops at once); else unchanged, and the render finds and reports it."""
    point = await services.sources.smart_point(source)
    if point is None:
        return job
    return dataclasses.replace(job, transform=dataclasses.replace(job.transform, focal=point))
