"""(j) Where the CPU of a page set goes, and what each encoder setting costs and gives:
in-process, CPU time (time.process_time: every thread of this process, so libavif's threads
count too; the machine is shared, so wall time would measure the neighbours).

A page set is one new 6 MP JPEG asked at 320, 640 and 1280 px as WebP and as JPEG, q=80:
six decodes (each at the DCT scale its width allows, as imgproxy decodes), six resizes
(Lanczos, reducing_gap), three WebP and three JPEG encodes; AVIF (q=60) is timed beside
for a page that asks AVIF instead.

Each setting is measured for every width of PHOTOS page photos, the settings interleaved in
each round (medians of the rounds); figures are per set (the three widths summed): CPU ms,
bytes, and SSIM (luma, Gaussian 11x11, sigma 1.5) of the decoded output against a reference:
the same photo decoded whole and resized by Lanczos in float, one channel at a time.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from benchmarks.harness import markdown_table, print_row
from benchmarks.pages import make_photos
from imgproxy.formats import OutputFormat
from imgproxy.geometry import decode_size, plan
from imgproxy.params import Fit
from imgproxy.render.encode import encode
from imgproxy.render.layout import REDUCING_GAP
from imgproxy.settings import Settings

WIDTHS = (320, 640, 1280)
QUALITY, AVIF_QUALITY = 80, 60
PHOTOS = 3
# What imgproxy's encode() uses: render.webp_effort's default (Pillow's method), Pillow's JPEG
# defaults (no option passed), render.avif_speed's default, render.layout.REDUCING_GAP.
DEFAULTS = {
    "WebP q=80": f"method={Settings().render.webp_effort}",
    "JPEG q=80": "optimize=False, progressive=False",
    "AVIF q=60": f"speed={Settings().render.avif_speed}",
    "resize, JPEG at its DCT scale": f"reducing_gap={REDUCING_GAP}",
    "resize, whole": f"reducing_gap={REDUCING_GAP}",
}
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Rendition:
    width: int
    drafted: Image.Image  # decoded at the DCT scale this width allows
    whole: Image.Image  # decoded whole: a source with no shrink-on-load (PNG, WebP)
    size: tuple[int, int]
    reference: Array  # luma of the float Lanczos of the whole decode


def drafted(data: bytes, width: int) -> Image.Image:
    """Decoded as imgproxy decodes a JPEG for `w=width`: at the smallest DCT scale that
    still has the output's pixels (render._draft), then RGB."""
    image = Image.open(io.BytesIO(data))
    geometry = plan(image.size, (width, None), Fit.CONTAIN, enlarge=False)
    image.draft("RGB", decode_size(image.size, geometry))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")  # as render.color.to_rgb


def whole(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def luma(rgb: Array) -> Array:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def reference(image: Image.Image, size: tuple[int, int]) -> Array:
    channels = [
        np.asarray(band.convert("F").resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
        for band in image.split()
    ]
    return luma(np.clip(np.stack(channels, axis=-1), 0, 255))


_KERNEL = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_KERNEL /= _KERNEL.sum()


def _blur(a: Array) -> Array:
    """Separable Gaussian, valid region only."""
    w = len(_KERNEL)
    rows: Array = sum(k * a[:, i : a.shape[1] - w + 1 + i] for i, k in enumerate(_KERNEL))
    cols: Array = sum(k * rows[i : a.shape[0] - w + 1 + i, :] for i, k in enumerate(_KERNEL))
    return cols


def ssim(x: Array, y: Array) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _blur(x), _blur(y)
    sxx, syy, sxy = _blur(x * x) - mx * mx, _blur(y * y) - my * my, _blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(index.mean())


def score(image: Image.Image, rendition: Rendition) -> float:
    return ssim(luma(np.asarray(image.convert("RGB"), dtype=np.float64)), rendition.reference)


def saved(image: Image.Image, fmt: str, options: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def resized(image: Image.Image, size: tuple[int, int], gap: float | None) -> Image.Image:
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)


@dataclass(frozen=True)
class Setting:
    group: str
    name: str
    # rendition -> (the work timed, then what it made: an encoded body or an image)
    work: Callable[[Rendition], Callable[[], bytes | Image.Image]]


def encoder(fmt: str, options: Mapping[str, Any]) -> Callable[[Rendition], Callable[[], bytes]]:
    def make(r: Rendition) -> Callable[[], bytes]:
        image = resized(r.drafted, r.size, REDUCING_GAP)
        return lambda: saved(image, fmt, options)

    return make


def resizer(source: str, gap: float | None) -> Callable[[Rendition], Callable[[], Image.Image]]:
    def make(r: Rendition) -> Callable[[], Image.Image]:
        image = r.drafted if source == "drafted" else r.whole
        return lambda: resized(image, r.size, gap)

    return make


def settings(quick: bool) -> list[Setting]:
    found = [
        Setting("WebP q=80", f"method={m}", encoder("WEBP", {"quality": QUALITY, "method": m}))
        for m in range(7)
    ]
    for optimize in (False, True):
        for progressive in (False, True):
            options = {"quality": QUALITY, "optimize": optimize, "progressive": progressive}
            name = f"optimize={optimize}, progressive={progressive}"
            found.append(Setting("JPEG q=80", name, encoder("JPEG", options)))
    speeds = (6, 8, 10) if quick else (6, 7, 8, 9, 10)
    for speed in speeds:
        options = {"quality": AVIF_QUALITY, "speed": speed}
        found.append(Setting("AVIF q=60", f"speed={speed}", encoder("AVIF", options)))
    for source, label in (("drafted", "resize, JPEG at its DCT scale"), ("whole", "resize, whole")):
        for gap in (None, 1.5, 2.0, 3.0):
            found.append(Setting(label, f"reducing_gap={gap}", resizer(source, gap)))
    return found


def cpu_ms(call: Callable[[], object]) -> float:
    began = time.process_time()
    call()
    return 1000 * (time.process_time() - began)


def breakdown(data: bytes, rounds: int) -> dict[str, float]:
    """One page set through imgproxy's own encode() (its current defaults), by stage: CPU ms
    summed over the set's renditions, medians of the rounds."""
    stages: dict[str, list[float]] = {}
    for _ in range(rounds):
        spent = dict.fromkeys(("decode", "resize", "WebP encode", "JPEG encode"), 0.0)
        spent["AVIF encode (if asked)"] = 0.0
        for width in WIDTHS:
            for fmt in (OutputFormat.WEBP, OutputFormat.JPEG, OutputFormat.AVIF):
                began = time.process_time()
                image = drafted(data, width)
                decoded = time.process_time()
                size = plan(image.size, (width, None), Fit.CONTAIN, enlarge=False).size
                out = resized(image, size, REDUCING_GAP)
                done = time.process_time()
                quality = AVIF_QUALITY if fmt is OutputFormat.AVIF else QUALITY
                encode([out], fmt, quality=quality, icc=None, background=(0, 0, 0, 255))
                ended = time.process_time()
                if fmt is not OutputFormat.AVIF:
                    spent["decode"] += 1000 * (decoded - began)
                    spent["resize"] += 1000 * (done - decoded)
                name = {"WEBP": "WebP encode", "JPEG": "JPEG encode"}.get(fmt.name)
                spent[name or "AVIF encode (if asked)"] += 1000 * (ended - done)
        for stage, ms in spent.items():
            stages.setdefault(stage, []).append(ms)
    return {stage: statistics.median(ms) for stage, ms in stages.items()}


def run(data: Path, rounds: int, *, quick: bool = False) -> list[dict[str, object]]:
    photos = make_photos(data)[: 1 if quick else PHOTOS]
    chosen = settings(quick)
    figures: dict[str, dict[str, list[float]]] = {
        f"{s.group}: {s.name}": {"ms": [], "bytes": [], "ssim": []} for s in chosen
    }
    sets: list[dict[str, float]] = []
    for path in photos:
        data_ = path.read_bytes()
        full = whole(data_)
        renditions = []
        for width in WIDTHS:
            size = plan(full.size, (width, None), Fit.CONTAIN, enlarge=False).size
            renditions.append(
                Rendition(width, drafted(data_, width), full, size, reference(full, size))
            )
        sets.append(breakdown(data_, rounds))
        for setting in chosen:
            key = f"{setting.group}: {setting.name}"
            calls = [setting.work(r) for r in renditions]
            made = [call() for call in calls]  # warm, and what is scored
            figures[key]["bytes"].append(
                sum(len(m) for m in made if isinstance(m, bytes)) or float("nan")
            )
            images = [Image.open(io.BytesIO(m)) if isinstance(m, bytes) else m for m in made]
            figures[key]["ssim"].append(
                statistics.mean(score(i, r) for i, r in zip(images, renditions, strict=True))
            )
        per_round: dict[str, list[float]] = {key: [] for key in figures}
        for r in range(rounds):  # interleaved, the order flipping each round
            order = chosen if r % 2 == 0 else chosen[::-1]
            for setting in order:
                calls = [setting.work(rendition) for rendition in renditions]
                key = f"{setting.group}: {setting.name}"
                per_round[key].append(sum(cpu_ms(call) for call in calls))
        for key, times in per_round.items():
            figures[key]["ms"].append(statistics.median(times))
    rows: list[dict[str, object]] = []
    spent = {stage: statistics.mean(s[stage] for s in sets) for stage in sets[0]}
    total = sum(ms for stage, ms in spent.items() if not stage.startswith("AVIF"))
    for stage, ms in spent.items():
        share = "-" if stage.startswith("AVIF") else f"{100 * ms / total:.0f} %"
        rows.append({"group": "page set CPU", "setting": stage, "cpu_ms": ms, "share": share})
    rows.append({"group": "page set CPU", "setting": "total", "cpu_ms": total, "share": "100 %"})
    for setting in chosen:
        key = f"{setting.group}: {setting.name}"
        values = figures[key]
        row: dict[str, object] = {
            "group": setting.group,
            "setting": setting.name,
            "cpu_ms": statistics.mean(values["ms"]),
            "bytes": statistics.mean(values["bytes"]),
            "ssim": statistics.mean(values["ssim"]),
        }
        rows.append(row)
        print_row(row)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    """The page set's CPU by stage; then each setting beside imgproxy's default for it."""
    stages = [row for row in rows if row["group"] == "page set CPU"]
    lines = [{**row, "cpu_ms": f"{row['cpu_ms']:.1f}"} for row in stages]
    out = markdown_table(lines, ["setting", "cpu_ms", "share"])
    chosen = [row for row in rows if row["group"] != "page set CPU"]
    base = {row["group"]: row for row in chosen if row["setting"] == DEFAULTS[str(row["group"])]}
    lines = []
    for row in chosen:
        b = base[row["group"]]
        cpu, size, quality = (float(row[k]) for k in ("cpu_ms", "bytes", "ssim"))  # type: ignore[arg-type]
        b_cpu, b_size, b_quality = (float(b[k]) for k in ("cpu_ms", "bytes", "ssim"))  # type: ignore[arg-type]
        name = f"{row['group']}: {row['setting']}"
        lines.append(
            {
                "setting": f"**{name} (default)**" if row is b else name,
                "CPU ms / set": f"{cpu:.1f}",
                "CPU vs default": f"{cpu / b_cpu:.2f}",
                "bytes / set": "-" if size != size else f"{size:.0f}",
                "bytes vs default": "-" if size != size else f"{size / b_size - 1:+.1%}",
                "SSIM": f"{quality:.4f}",
                "SSIM vs default": f"{quality - b_quality:+.4f}",
            }
        )
    return out + "\n\n" + markdown_table(lines, list(lines[0]))
