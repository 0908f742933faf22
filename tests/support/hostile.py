"""A hostile-input corpus, generated: truncated and corrupt images, non-images named like
images, polyglots, headers declaring absurd sizes, frame bombs, formats needing approval."""

from __future__ import annotations

import io
import itertools
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

from tests.support import images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR declaring `width` x `height`, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb() -> bytes:
    """A real JPEG whose SOF0 is patched to declare 65535 x 65535 (the format's maximum)."""
    data = bytearray(images.jpeg((64, 48)))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", 65535, 65535)
    return bytes(data)


def gif_bomb() -> bytes:
    data = bytearray(images.gif(1, (8, 8)))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def webp_bomb() -> bytes:
    """An extended (VP8X) WebP declaring a 16384 x 16384 canvas around a small real frame."""
    small = images.encode(images.photo((16, 16)), "WEBP", quality=50)
    frame = small[12:]  # the "VP8 " chunk of a simple lossy file
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_bomb() -> bytes:
    bits = (16383) | (16383 << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_bomb() -> bytes:
    data = bytearray(images.encode(images.photo((8, 8)), "BMP"))
    data[18:26] = struct.pack("<ii", 100_000, 100_000)
    return bytes(data)


def many_frames_gif(frames: int = 3000) -> bytes:
    colours = [(255, 0, 0), (0, 0, 255)]
    first = Image.new("RGB", (2, 2), colours[0])
    rest = [Image.new("RGB", (2, 2), colours[(i + 1) % 2]) for i in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=rest, duration=20, optimize=False)
    return buffer.getvalue()


def noisy_jpeg(size: tuple[int, int]) -> bytes:
    return images.encode(Image.effect_noise(size, 100).convert("RGB"), "JPEG", quality=95)


REFUSED = {
    415: "unsupported_format",
    413: "too_large",
    422: "undecodable",
    403: "not_approved",
}

# (store, file) -> (original, rendition ?w=50, metadata ?fm=json) statuses
CASES: dict[tuple[str, str], tuple[int, int, int]] = {
    ("pending", "truncated.jpg"): (200, 422, 200),  # header intact: originals are never decoded
    ("pending", "cut-header.jpg"): (422, 422, 422),
    ("pending", "truncated.png"): (200, 422, 200),
    ("pending", "cut-header.png"): (422, 422, 422),
    ("pending", "random.png"): (415, 415, 415),
    ("pending", "empty.jpg"): (415, 415, 415),
    ("pending", "page.png"): (415, 415, 415),
    ("pending", "vector.png"): (415, 415, 415),
    ("pending", "doc.png"): (415, 415, 415),
    ("pending", "polyglot.gif"): (422, 422, 422),
    ("pending", "polyglot.jpg"): (200, 200, 200),  # a real image: sent as image/jpeg, nosniff
    ("pending", "bomb.png"): (413, 413, 413),
    ("pending", "bomb.jpg"): (413, 413, 413),
    ("pending", "bomb.gif"): (413, 413, 413),
    ("pending", "bomb.webp"): (413, 413, 413),
    ("pending", "bomb-lossless.webp"): (413, 413, 413),
    ("pending", "frames.gif"): (413, 413, 200),  # animated output over max_frames
    ("pending", "photo.tif"): (403, 403, 403),
    ("pending", "photo.bmp"): (403, 403, 403),
    ("pending", "icon.ico"): (403, 403, 403),
    ("pending", "photo.avif"): (403, 403, 403),
    ("pending", "blessed.tif"): (200, 200, 200),  # approved by its sidecar
    ("pending", "broken-sidecar.tif"): (403, 403, 403),  # unreadable sidecar: not approved
    ("approved", "photo.tif"): (200, 200, 200),
    ("approved", "photo.bmp"): (200, 200, 200),
    ("approved", "icon.ico"): (200, 200, 200),
    ("approved", "photo.avif"): (200, 200, 200),
    ("approved", "bomb.bmp"): (413, 413, 413),
    ("approved", "random.png"): (415, 415, 415),
    ("approved", "page.png"): (415, 415, 415),
    ("approved", "revoked.jpg"): (200, 200, 200),  # JPEG needs no approval
    ("small", "big.jpg"): (413, 413, 413),
    ("small", "ok.jpg"): (200, 200, 200),
}


# The stores the corpus is served from, as a config file's tables (SPEC §7).
CORPUS_STORES = (
    '[stores.pending]\nkind = "fs"\nroot = "pending"\n'
    '[stores.approved]\nkind = "fs"\nroot = "approved"\napproved = true\n'
    '[stores.small]\nkind = "fs"\nroot = "small"\napproved = true\nmax_source_bytes = 100000\n'
)


def write_corpus(pending: Path, approved: Path, small: Path) -> None:
    jpeg, png = images.jpeg((800, 600)), images.png((400, 300))
    files = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "cut-header.jpg": jpeg[:100],
        "truncated.png": png[: len(png) // 2],
        "cut-header.png": png[:20],
        "random.png": random.Random(7).randbytes(5000),
        "empty.jpg": b"",
        "page.png": b"<!doctype html><html><script>alert(document.cookie)</script></html>",
        "vector.png": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "doc.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "polyglot.gif": b"GIF89a/*\x00\x00\x00\x00\x00*/=alert(1);//" + b"\x00" * 64,
        "polyglot.jpg": jpeg + b"<html><script>alert(1)</script></html>",
        "bomb.png": png_bomb(),
        "bomb.jpg": jpeg_bomb(),
        "bomb.gif": gif_bomb(),
        "bomb.webp": webp_bomb(),
        "bomb-lossless.webp": webp_lossless_bomb(),
        "frames.gif": many_frames_gif(),
        "photo.tif": images.encode(images.photo((64, 48)), "TIFF"),
        "photo.bmp": images.encode(images.photo((64, 48)), "BMP"),
        "icon.ico": images.encode(images.photo((32, 32)), "ICO"),
        "photo.avif": images.encode(images.photo((64, 48)), "AVIF"),
    }
    for name, data in files.items():
        (pending / name).write_bytes(data)
        (approved / name).write_bytes(data)
    (approved / "bomb.bmp").write_bytes(bmp_bomb())
    (pending / "blessed.tif").write_bytes(files["photo.tif"])
    (pending / "blessed.tif.meta.json").write_text('{"approved": true}')
    (pending / "broken-sidecar.tif").write_bytes(files["photo.tif"])
    (pending / "broken-sidecar.tif.meta.json").write_text('{"approved": tru')
    (approved / "revoked.jpg").write_bytes(images.jpeg((64, 48)))
    (approved / "revoked.jpg.meta.json").write_text('{"approved": false}')
    (small / "big.jpg").write_bytes(noisy_jpeg((600, 600)))
    (small / "ok.jpg").write_bytes(images.jpeg((64, 48)))


# Issue 10: decodes before the pixel limit, work out of proportion to bytes, amplification.


def ico_png_bomb(side: int = 40_000, *, complete: bool = False) -> bytes:
    """An ICO whose directory says 16x16 but whose entry embeds a `side` x `side` greyscale
    PNG; Pillow decodes ICO entries while opening. `complete` compresses every row (slow to
    build: for measuring by hand); otherwise the IDAT is a stub."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    if complete:
        packer = zlib.compressobj(9)
        row = b"\x00" * (side + 1)
        idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    else:
        idat = zlib.compress(b"\x00" * 64)
    embedded = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(embedded), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + embedded


def ico_second_entry_bomb() -> bytes:
    """A real 16x16 icon, then a second entry (directory says 32x32) whose BMP header
    declares 100000 x 100000."""
    small = images.encode(images.photo((16, 16)), "PNG")
    dib = struct.pack("<IiiHHIIiiII", 40, 100_000, 200_000, 1, 32, 0, 0, 0, 0, 0, 0)
    first_at = 6 + 2 * 16
    entries = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(small), first_at)
    entries += struct.pack("<BBBBHHII", 32, 32, 0, 0, 1, 32, len(dib), first_at + len(small))
    return struct.pack("<HHH", 0, 1, 2) + entries + small + dib


def _tiff_ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
    """A little-endian IFD: (tag, type, count, value) entries, values inline."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    return body + struct.pack("<I", next_ifd)


def _tiff_page(
    width: int, height: int, strip_at: int, strip_bytes: int
) -> list[tuple[int, int, int, int]]:
    return [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # min-is-black
        (273, 4, 1, strip_at),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, strip_bytes),
    ]


def tiff_pages(pages: int, *, bomb_page: int | None = None) -> bytes:
    """A greyscale 4x4 TIFF with `pages` IFDs sharing one strip; page `bomb_page` (if any)
    declares 100000 x 100000."""
    strip_at, ifd_size = 8, 2 + 9 * 12 + 4
    first = strip_at + 16
    out = bytearray(b"II*\x00" + struct.pack("<I", first) + b"\x80" * 16)
    for page in range(pages):
        at = first + page * ifd_size
        following = at + ifd_size if page + 1 < pages else 0
        side = 100_000 if page == bomb_page else 4
        out += _tiff_ifd(_tiff_page(side, side, strip_at, 16), following)
    return bytes(out)


def avif_ispe_bomb() -> bytes:
    """A real small AVIF whose `ispe` property is patched to declare 60000 x 60000."""
    data = bytearray(images.encode(images.photo((64, 48)), "AVIF"))
    at = data.index(b"ispe")
    data[at + 8 : at + 16] = struct.pack(">II", 60_000, 60_000)
    return bytes(data)


def gif_frame_flood(frames: int, *, garbage_after: int | None = None) -> bytes:
    """A 2x2 GIF of `frames` minimal frames (15 bytes each). With `garbage_after`, the bytes
    after that many frames are not GIF blocks: a counter that stops in time never sees them."""
    head = b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x01\x00"
    if garbage_after is None:
        return head + frame * frames + b"\x3b"
    return head + frame * garbage_after + b"\x99" * 64


def scan_flood_jpeg(scans: int, size: tuple[int, int] = (6000, 4000)) -> bytes:
    """A progressive JPEG of a flat picture whose last AC scan is repeated `scans` times:
    each copy is a few bytes, yet libjpeg walks every block of the image for it."""
    data = images.encode(Image.new("RGB", size, (90, 140, 200)), "JPEG", progressive=True)
    last_sos = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_sos:end] * scans + b"\xff\xd9"


def tem_hidden_scan_flood(size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG followed by a TEM marker (FF 01, which has no length) and 64 KiB
    of repeated scans: a parser that reads the two bytes after FF 01 as a length (FF FF)
    skips them all, while libjpeg takes FF 01 alone, then fill, then decodes every scan."""
    data = images.encode(Image.new("RGB", size, (90, 140, 200)), "JPEG", progressive=True)
    last_sos, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    unit = data[last_sos:end]
    hidden = b"\xff\xff" + unit[1:]  # fill byte, then the scan's own FF DA
    while len(hidden) + len(unit) <= 0xFFFF:
        hidden += unit
    hidden += bytes(0xFFFF - len(hidden))
    return data[:end] + b"\xff\x01" + hidden + b"\xff\xd9"


def ico_magic_tga() -> bytes:
    """ICO magic bytes (00 00 01 00) on a header Pillow's TGA plugin parses (TGA has no
    magic of its own): an ICO that no ICO decoder opens."""
    header = bytearray(18)
    header[0:4] = b"\x00\x00\x01\x00"
    header[12:16] = struct.pack("<HH", 64, 64)
    header[16], header[17] = 8, 0x20
    return bytes(header) + bytes(range(256)) * 16


def png_chunk_flood(chunks: int) -> bytes:
    """A 4x4 PNG whose image data is spread over `chunks` IDAT chunks, most of them empty."""
    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x80\x80\x80\x80" * 4)
    empty = _png_chunk(b"IDAT", b"")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + empty * chunks
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def big_icc_profile(size: int) -> bytes:
    """A real sRGB profile padded to `size` bytes (its header's size field updated)."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile += b"\x00" * (size - len(profile))
    profile[0:4] = struct.pack(">I", size)
    return bytes(profile)


def amplifier_jpeg(icc_bytes: int = 8 * 2**20) -> bytes:
    """A small JPEG carrying a huge ICC profile, a long comment and a big EXIF block."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    return images.encode(
        images.photo((64, 48)),
        "JPEG",
        icc_profile=big_icc_profile(icc_bytes),
        comment=b"c" * 60_000,
        exif=exif.tobytes(),
    )


def amplifier_png(icc_bytes: int = 1_000_000) -> bytes:
    """A small PNG with a big iCCP profile (Pillow reads at most 1 MB) and megabytes of text."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for i in range(8):
        info.add_text(f"k{i}", "t" * 500_000, zip=True)
    return images.encode(
        images.photo((64, 48)), "PNG", icc_profile=big_icc_profile(icc_bytes), pnginfo=info
    )


def amplifier_gif() -> bytes:
    """An animated GIF with a long comment."""
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], comment=b"c" * 200_000)
    return buffer.getvalue()


def heif_ispe_bomb(data: bytes, side: int = 60_000) -> bytes:
    """A real HEIF (heif-enc's) whose every `ispe` property declares side x side."""
    out = bytearray(data)
    at = out.find(b"ispe")
    while at >= 0:
        out[at + 8 : at + 16] = struct.pack(">II", side, side)
        at = out.find(b"ispe", at + 4)
    return bytes(out)


def heif_canvas_bomb(data: bytes, side: int) -> bytes:
    """A real HEIF (heif-enc's, whose primary item is a grid with its data in `idat`) made an
    overlay of its one tile on a side x side canvas. Its `ispe` still says the image's own
    size: libheif allocates the canvas before it finds the two disagree."""
    out = bytearray(data)
    meta = images.child_box(out, 0, len(out), b"meta")
    inner = (meta[0] + 12, meta[1])
    iinf = images.child_box(out, *inner, b"iinf")
    at = out.index(b"grid", *iinf)
    out[at : at + 4] = b"iovl"
    idat = images.child_box(out, *inner, b"idat")
    # version 0, flags 0 (16-bit sizes), fill colour, canvas width and height, tile offset
    overlay = struct.pack(">BB4HHHhh", 0, 0, 0, 0, 0, 0xFFFF, side, side, 0, 0)
    grown = len(overlay) - (idat[1] - idat[0] - 8)
    out[idat[0] + 8 : idat[1]] = overlay
    images.grow_boxes(out, [meta[0], idat[0]], grown)
    iloc = images.child_box(out, *inner, b"iloc")[0]
    for extent in images.iloc_extents(out, iloc):
        if extent.method == 1:  # the overlay's data, now longer
            images.write_field(out, extent.length, len(overlay))
    images.move_file_offsets(out, meta[1], grown)
    return bytes(out)


# Found by fuzzing inspect(): AVIF and HEIF files whose decoders raise RuntimeError (a 500
# until it was counted as "undecodable"). base64, a few hundred bytes each.
DECODER_RUNTIME_ERRORS = {
    "avif-0": (
        "AAAAIGZ0eXBhdmlmAABlAGF2aWZtaWYxbWlhZk1BMUIAAADrbWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAcGljdAAA"
        "AAAAAAAAAAAAAAAAAAAOcGl0bQAAvQAAAQAAAB5pbG9jAAAAAEQAAAEAAQAAAAEAAAETAAAAeQAAAChpaW5mAAAA"
        "AAABAAAAGmluZmUCAAAAAAEAAGF2MjFDbwAAAAAAAABqaXBycAAAAEtpcGNvAAAAFGlzcGUAAAAAAAAAIAAAACAA"
        "AAAQcGl4aQAAAAADCAgIAAAADGF2MUOBAAwAAAAAE2NvbHJuY2x4AAEADQAAAAAAABdpcG1hAAAAAAAAAAEAAQQB"
        "AoMEAAAAgW1kYXQSAAoJGBE/9ogIaDQgMmoUx4eGZQIIIJ5VFQAAz7Eew1xnSAV2/ffbQNR3IdbHEXf1Sg7N2Gvp"
        "PRKpr2OpDoa9Jul8kPpCeY1pRocyFCFNFN3Yzp5fLwHLUXLTNp3bycwEc2sPBBeigA=="
    ),
    "avif-1": (
        "AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUIAAADrbWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAcGljdAAA"
        "AAAAAAAAAAAAAAAAAAAOcGl0bQAAAAAAAQAAAB5pbG9jAAAAAEQAAAEAAQAAAAEAAAETAAAAeQAAAChpaW5mAAAA"
        "AAABAAAAGmluZmUCAAAAAAEAAGF2MDFDb2xvcgAAAABqaXBycAAAAEtpcGNvAAAAFGlzcGUAAAAAAAAAIAAAACAA"
        "AAAQcGl4aQAAAAADCAgIAAAADGF2MUOBAAwAAAAAE2NvbHJuY2x4AAEADQAGgAAAABdpcG1hAAAAAAAAAAEAAQQB"
        "AoMEAAAAgW1kYXQSAAoJGBE/9ogIaDQgMmoUx4eGZQIIIJ5VFQAAz7Eew1xnSAV2/ffbQNR3IdbHEXf1Sg7N2Gvp"
        "PRKpr9ucsZUtQRmCcNV+FyncUaWNY6kOhr0m6XyQAAAAAWlGhzIUIU0U3djOnl8vActRctM2ndvJzARzaw8EF6KA"
    ),
    "heif-0": (
        "AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAa1tZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAA"
        "AAAAAAAAAAAAAA5waXRtAAAAAAACAAAAEGlkYXQAAAAAAEAAMAAAADhpbG9jAQAAAERAAAIAAQAAAAAAAAHRAAEA"
        "AAAAAAACWwACAAEAAAAAAAAAAQAAAAAAAAAIAAAAOGlpbmYAAAAAAAIAAAAVaW5mZQIAAAEAAQAAaHZjMQAAAAAV"
        "aW5mZQIAAAAAAgAAZ3JpZAAAAADYaXBycAAAALZpcGNvAAAAdmh2Y0P7A3AAAAAAAAAAAAAe8AD8/fj4AAAPAyAA"
        "AQAYQAEMAf//A3AAAAMAkAAAAwAAAwAeugJAIQABACpCAQEDcAAAAwCQAAADAAADAB6gIIEFlurkprm4EBAwIAAA"
        "AwAgAAADACEiAAEABkQBwXPAiQAAABRpc3ALAAAAAAAAAEAAAABAAAAAFGlzcGUAAAAAAAAAQAAAADAAAAAQcGl4"
        "aQAAAAADCAgIAAAAGmlwbWEAAAAAAAAAAgABAoECAAICA4QAAAAaaXJlZgAAAAAAAAAOZGltZwACAAEAAQAAAmNt"
        "ZGF0AAACVygBrwY48YEUneOmbtkfoT3HQahAIIOcQUeQ+99oag7YIp41E5y5LmEpJfFZTS77n88FXX9h/yz/Vf+Z"
        "kaH634Ut5AjiU45eoquAZXV0PmF8xK5m9wyhdPs8RzKF0s8XP3ZlZEPS/OfcR8j7kkYZ/qT+CpvKsScRndC34cDR"
        "h8jUyuJTpPNZyTFf9lmcghrCMwumDnEwwHn3J4DdEVmruN8BDa2Hj5+fe/NTY5j4oBnm0UcJnQ7wJM0m96d0BxVZ"
        "6exzc/h9Cn4QQQ8vr0zbmIi7bwm/VzbogbGokKg+UI0jzzR/jPx88YwEAZxzqQJMryvrAJvpn8S7VB5qHWiPJ3Us"
        "+jXGzHymz+OwnwPS2BSPqMkdYHy3cUP/AgjHWvm5pRFL/hmA0vo/O8Qh4fRatkAr+ewfXhHB"
    ),
}


def exif_segment_flood(segments: int = 700) -> bytes:
    """A 64x64 JPEG with `segments` APP1 Exif segments of 64 KiB before its frame: Pillow
    appends each to all the ones before it (a copy of them all each time)."""
    payload = b"Exif\x00\x00" + Image.Exif().tobytes()[6:]
    payload += bytes(0xFFFF - 2 - len(payload))
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = images.jpeg((64, 64))
    return data[:2] + segment * segments + data[2:]


def _box(kind: bytes, payload: bytes, version: int | None = None, flags: int = 0) -> bytes:
    """An ISOBMFF box; a full box (version, 24-bit flags) when `version` is given."""
    if version is not None:
        payload = bytes([version]) + flags.to_bytes(3, "big") + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _coded_item(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The hvcC and ispe property boxes and the coded bytes of heif-enc's single item."""
    out = bytearray(data)
    meta = images.child_box(out, 0, len(out), b"meta")
    inner = (meta[0] + 12, meta[1])
    iprp = images.child_box(out, *inner, b"iprp")
    ipco = images.child_box(out, iprp[0] + 8, iprp[1], b"ipco")
    hvcc = images.child_box(out, ipco[0] + 8, ipco[1], b"hvcC")
    ispe = images.child_box(out, ipco[0] + 8, ipco[1], b"ispe")
    iloc = images.child_box(out, *inner, b"iloc")[0]
    (extent,) = images.iloc_extents(out, iloc)  # one item, one extent, at a file offset
    start = images.read_field(out, extent.base) + images.read_field(out, extent.offset)
    coded = data[start : start + images.read_field(out, extent.length)]
    return data[hvcc[0] : hvcc[1]], data[ispe[0] : ispe[1]], coded


def heif_overlay_tree(data: bytes, depth: int, fanout: int) -> bytes:
    """A HEIF whose primary item is an `iovl` overlay of `fanout` overlays, each of `fanout`
    overlays ... `depth` levels deep, the last level referencing `fanout` coded items that
    all share the coded bytes of `data` (a heif-enc file of one item). libheif decodes each
    reference each time: fanout ** depth decodes of that image from a few KB of boxes (it
    refuses one item referenced twice by the same item, so each level has `fanout` items).
    Every overlay's canvas and `ispe` are the coded image's own size; every item but the
    primary is hidden (infe flags), so the file is one image."""
    hvcc, ispe, coded = _coded_item(data)
    width, height = struct.unpack(">II", ispe[12:20])
    # Item IDs level by level: the primary overlay (1), then `fanout` items a level.
    levels = [[1]] + [
        [2 + fanout * (level - 1) + i for i in range(fanout)] for level in range(1, depth + 1)
    ]
    overlays = [item for level in levels[:-1] for item in level]
    leaves = levels[-1]
    ftyp = _box(b"ftyp", b"heic" + bytes(4) + b"mif1heicmiaf")
    overlay = struct.pack(">BB4HHH", 0, 0, 0, 0, 0, 0xFFFF, width, height)
    overlay += struct.pack(">hh", 0, 0) * fanout
    infe = [  # all but the primary hidden: one image (frame) as libheif lists them
        _box(b"infe", struct.pack(">HH4sB", item, 0, kind, 0), 2, int(item != 1))
        for kind, level in ((b"iovl", overlays), (b"hvc1", leaves))
        for item in level
    ]
    dimg = b"".join(
        _box(b"dimg", struct.pack(f">HH{fanout}H", item, fanout, *below))
        for above, below in itertools.pairwise(levels)
        for item in above
    )
    ipma = struct.pack(">I", len(overlays) + len(leaves))
    ipma += b"".join(struct.pack(">HBB", item, 1, 0x02) for item in overlays)  # ispe
    ipma += b"".join(struct.pack(">HBBB", item, 2, 0x81, 0x02) for item in leaves)  # + hvcC

    def meta(coded_at: int) -> bytes:
        iloc = struct.pack(">HH", 0x4400, len(overlays) + len(leaves))  # 32-bit fields
        iloc += b"".join(
            struct.pack(">HHHHII", item, 1, 0, 1, n * len(overlay), len(overlay))
            for n, item in enumerate(overlays)
        )
        iloc += b"".join(
            struct.pack(">HHHHII", item, 0, 0, 1, coded_at, len(coded)) for item in leaves
        )
        return _box(
            b"meta",
            _box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0)
            + _box(b"pitm", struct.pack(">H", 1), 0)
            + _box(b"iloc", iloc, 1)
            + _box(b"iinf", struct.pack(">H", len(infe)) + b"".join(infe), 0)
            + _box(b"iref", dimg, 0)
            + _box(b"iprp", _box(b"ipco", hvcc + ispe) + _box(b"ipma", ipma, 0))
            + _box(b"idat", overlay * len(overlays)),
            0,
        )

    head = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(head) + _box(b"mdat", coded)


def avif_hidden_frame(data: bytes, side: int = 64) -> bytes:
    """A real AVIF (Pillow's: a still, or a sequence with its `moov` track) whose declared
    sizes all say side x side: every `ispe`, the track header's and the sample entry's
    width and height. The AV1 frames keep their own size: libavif allocates that."""
    out = bytearray(data)
    for at in _all(out, b"ispe"):
        out[at + 8 : at + 16] = struct.pack(">II", side, side)
    for at in _all(out, b"tkhd"):  # version 1: the 16.16 width and height end the box
        end = at - 4 + int.from_bytes(out[at - 4 : at], "big")
        out[end - 8 : end] = struct.pack(">II", side << 16, side << 16)
    for at in _all(out, b"av01"):  # a visual sample entry: width, height after 24 bytes
        if out[at + 4 : at + 10] == bytes(6):
            out[at + 28 : at + 32] = struct.pack(">HH", side, side)
    return bytes(out)


def _all(data: bytearray, kind: bytes) -> list[int]:
    """Where each box of type `kind` has its type field (a box starts 4 bytes before)."""
    found, at = [], data.find(kind)
    while at >= 0:
        found.append(at)
        at = data.find(kind, at + 4)
    return found


def heif_item_flood(items: int) -> bytes:
    """A HEIF `meta` of `items` coded items, each with an `infe` and an `iloc` entry and
    no data: 30 bytes an item, so 50 MB declare 1.7 million."""
    ftyp = _box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")
    infe = b"".join(_box(b"infe", struct.pack(">IH4sB", i, 0, b"hvc1", 0), 3) for i in range(items))
    iloc = struct.pack(">HI", 0x4400, items)
    iloc += b"".join(struct.pack(">IHHII", i, 0, 1, 0, 0) for i in range(items))
    meta = _box(b"pitm", struct.pack(">H", 1), 0) + _box(
        b"iinf", struct.pack(">I", items) + infe, 1
    )
    return ftyp + _box(b"meta", meta + _box(b"iloc", iloc, 2), 0)
