"""(i) A page of new photos: each new 6 MP photo asked at 320, 640 and 1280 px, as WebP and as
JPEG (q=80), its six renditions arriving together, by 32 clients; imgproxy, thumbor 7.8 and
the libvips app side by side in one run, 2 workers each, rounds alternating.

Every page photo is new to the server: the photos are PHOTOS distinct 6 MP crops of the
24 MP source (benchmarks/data/pages/photo-<k>.jpg), and each round of each contender reads
them under names of its own (hard links, benchmarks/data/pages/<round>-<name>/<n>.jpg, one
per page set), so no cache of a source, a decode or a rendition can answer for another set.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
from PIL import Image, ImageOps

from benchmarks.harness import LINKS, PAGES_LUA, link_round, wrk
from benchmarks.versus_thumbor import (
    Contender,
    contenders,
    print_summary,
    summarise,
    through_links,
)

PHOTOS = 8  # distinct pictures
PAGE_SIZE = (3000, 2000)  # 6 MP
WIDTHS, FORMATS = (320, 640, 1280), ("webp", "jpeg")


def make_photos(data: Path) -> list[Path]:
    """PHOTOS distinct 6 MP JPEGs (q=90), crops of the 24 MP source at spread offsets, every
    other one mirrored."""
    folder = data / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo-{k}.jpg" for k in range(PHOTOS)]
    if all(path.exists() for path in paths):
        return paths
    with Image.open(data / "photo-24MP.jpg") as big:
        big.load()
        span_x, span_y = big.width - PAGE_SIZE[0], big.height - PAGE_SIZE[1]
        for k, path in enumerate(paths):
            x = span_x * (k % 4) // 3
            y = span_y * (k // 4) // max(1, (PHOTOS - 1) // 4)
            photo = big.crop((x, y, x + PAGE_SIZE[0], y + PAGE_SIZE[1]))
            if k % 2:
                photo = ImageOps.mirror(photo)
            photo.save(path, "JPEG", quality=90)
    return paths


def check_outputs(servers: dict[str, Contender], folder: str) -> dict[str, dict[str, int]]:
    """Every contender answers each rendition of a photo in its format, at its width (the
    height within a pixel of ours); the bytes of each, for the record."""
    sizes: dict[str, dict[str, int]] = {}
    for contender in servers.values():
        sizes[contender.name] = {}
        for width in WIDTHS:
            for fmt in FORMATS:
                path = contender.template(folder).format(n=0, w=width, fm=fmt)
                response = httpx.get(contender.base + path, timeout=60)
                response.raise_for_status()
                with Image.open(io.BytesIO(response.content)) as image:
                    assert image.format == fmt.upper(), (contender.name, image.format, fmt)
                    assert image.width == width, (contender.name, image.size, width)
                    assert abs(image.height - round(width * 2 / 3)) <= 1, (
                        contender.name,
                        image.size,
                    )
                sizes[contender.name][f"{width} {fmt}"] = len(response.content)
    return sizes


def run(
    data: Path, rounds: int, seconds: float, rows: list[dict[str, object]], connections: int = 32
) -> None:
    """Rounds of twice `seconds`: a page request takes a second or two under 32 clients, and
    wrk counts only the requests answered in time, so a short round undercounts."""
    seconds *= 2
    photos = make_photos(data)
    with contenders(data, vips=True) as servers:
        sizes = check_outputs(servers, link_round(data, photos, "check"))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for contender in servers.values():  # warm every worker: imports, pools, first renders
            folder = link_round(data, photos, f"warm-{contender.name}")
            path = contender.template(folder)
            wrk(
                contender.base + "/",
                2,
                connections=connections,
                script=(PAGES_LUA, [path, "0", str(LINKS)]),
            )
        for r in range(rounds):
            order = list(servers.values())
            order = order[r % len(order) :] + order[: r % len(order)]
            for contender in order:
                path = contender.template(link_round(data, photos, f"{r}-{contender.name}"))
                runs[contender.name].append(through_links(contender, path, seconds, connections, 6))
    for made in (data / "pages").iterdir():
        if made.is_dir():
            shutil.rmtree(made)
    row = summarise(f"page sets of new 6 MP photos, -c{connections}", runs)
    row["bytes"] = sizes
    rows.append(row)
    print_summary(row)
