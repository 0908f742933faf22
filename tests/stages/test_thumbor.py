"""thumbor URLs -> native parameters (SPEC §15.2), the URLs built by thumbor's own library
(libthumbor), never by a signer of ours: the signature, the grammar, every filter, and each
refusal with its status and the part it names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from typing import Any

import pytest
from libthumbor import CryptoURL
from PIL import Image, ImageChops, ImageColor, ImageStat

from imgproxy.dialects import Translation
from imgproxy.dialects.colours import NAMED
from imgproxy.dialects.thumbor import ThumborDialect
from imgproxy.errors import BadRequest, BadSignature
from imgproxy.params import parse_query
from imgproxy.settings import ThumborDialectSettings
from tests.support import images

KEY = "thumbor-secret"
HTTP_STORE = "https://images.example.com/assets/"


def dialect(*, key: str = KEY, unsafe: bool = False) -> ThumborDialect:
    config = ThumborDialectSettings(store="media", security_key=key, allow_unsafe=unsafe)
    return ThumborDialect(
        config, http_stores={HTTP_STORE: "remote"}, watermarks={"brand/logo.png": "logo"}
    )


def signed(**options: Any) -> str:
    """libthumbor's signed URL, as `rest` (what follows /thumbor/)."""
    options.setdefault("image_url", "photo.jpg")
    return str(CryptoURL(key=KEY).generate(**options)).removeprefix("/")


def meaning(**options: Any) -> dict[str, str]:
    found = dialect().translate(signed(**options), "")
    assert (found.store, found.path) == ("media", options.get("image_url", "photo.jpg"))
    return dict(found.params)


CASES: list[tuple[dict[str, Any], str]] = [
    ({}, "fit=contain"),  # thumbor always re-encodes: never the original with its EXIF
    ({"width": 300, "height": 200}, "w=300&h=200&fit=cover"),
    ({"width": 300}, "w=300"),
    ({"height": 200}, "h=200"),
    ({"width": 300, "height": 200, "fit_in": True}, "w=300&h=200"),
    ({"width": 300, "fit_in": True}, "w=300"),
    ({"width": 300, "height": 200, "flip": True}, "w=300&h=200&fit=cover&flip=h"),
    ({"width": 300, "height": 200, "flop": True}, "w=300&h=200&fit=cover&flip=v"),
    ({"width": 30, "height": 20, "flip": True, "flop": True}, "w=30&h=20&fit=cover&flip=hv"),
    ({"flip": True}, "flip=h"),
    ({"width": 30, "height": 20, "halign": "left"}, "w=30&h=20&fit=cover&g=w"),
    ({"width": 30, "height": 20, "valign": "top"}, "w=30&h=20&fit=cover&g=n"),
    (
        {"width": 30, "height": 20, "halign": "right", "valign": "bottom"},
        "w=30&h=20&fit=cover&g=se",
    ),
    ({"width": 30, "height": 20, "halign": "left", "valign": "bottom"}, "w=30&h=20&fit=cover&g=sw"),
    ({"width": 30, "height": 20, "smart": True}, "w=30&h=20&fit=cover&g=smart"),
    ({"width": 30, "height": 20, "halign": "left", "smart": True}, "w=30&h=20&fit=cover&g=smart"),
    ({"crop": ((10, 20), (110, 220))}, "crop=10,20,100,200"),
    ({"crop": ((10, 20), (110, 220)), "width": 50}, "crop=10,20,100,200&w=50"),
    ({"trim": True}, "trim=0"),
    ({"trim": ("top-left", 12)}, "trim=12"),
    ({"filters": ["format(webp)"]}, "fm=webp"),
    ({"filters": ["format(jpg)"]}, "fm=jpeg"),
    ({"filters": ["quality(70)"]}, "q=70"),
    ({"filters": ["quality(70)", "format(png)"]}, "q=70&fm=png"),
    # blur: the spread of thumbor's kernel (a Gaussian cut off at the radius, at most 150).
    ({"filters": ["blur(3)"]}, "blur=1.84"),
    ({"filters": ["blur(4,1.5)"]}, "blur=1.48"),
    ({"filters": ["blur(4, 0)"]}, "blur=2.38"),
    ({"filters": ["blur(200)"]}, "blur=83.64"),
    ({"filters": ["blur(150,1000000)"]}, "blur=86.89"),  # all 301 weights equal
    ({"filters": ["blur(1,0.2)"]}, "fit=contain"),  # a kernel of one pixel: no blur
    ({"filters": ["sharpen(2,1.0,true)"]}, "sharpen=1"),
    ({"filters": ["sharpen(1.5,0.5,false)"]}, "sharpen=0.5"),
    ({"filters": ["upscale()"]}, "enlarge=1"),
    ({"filters": ["no_upscale()", "strip_exif()", "strip_icc()"]}, "fit=contain"),
    ({"crop": ((10, 10), (10, 50))}, "fit=contain"),  # an empty box: ignored, as in thumbor
    (
        {"width": 30, "height": 20, "fit_in": True, "filters": ["fill(red)"]},
        "w=30&h=20&fit=pad&bg=ff0000",
    ),
    (
        {"width": 30, "height": 20, "fit_in": True, "filters": ["fill(0a0B0c)"]},
        "w=30&h=20&fit=pad&bg=0a0b0c",
    ),
    (
        {"width": 30, "height": 20, "fit_in": True, "filters": ["fill(abc)"]},
        "w=30&h=20&fit=pad&bg=aabbcc",
    ),
    (
        {"width": 30, "height": 20, "fit_in": True, "filters": ["fill(transparent)"]},
        "w=30&h=20&fit=pad&bg=00000000",
    ),
    (
        {"width": 30, "height": 20, "filters": ["fill(White,false)"]},
        "w=30&h=20&fit=cover&bg=ffffff",
    ),
    # thumbor rotates counter-clockwise after fitting; rot turns clockwise before it: the box,
    # the flips and the crop's anchor turn with it.
    ({"filters": ["rotate(90)"]}, "rot=270"),
    ({"filters": ["rotate(-90)"]}, "rot=90"),
    ({"filters": ["rotate(180)", "rotate(180)"]}, "fit=contain"),
    ({"width": 300, "height": 200, "filters": ["rotate(90)"]}, "w=200&h=300&fit=cover&rot=270"),
    ({"width": 300, "height": 200, "filters": ["rotate(180)"]}, "w=300&h=200&fit=cover&rot=180"),
    (
        {"width": 30, "height": 20, "halign": "left", "filters": ["rotate(90)"]},
        "w=20&h=30&fit=cover&g=s&rot=270",
    ),
    (
        {"width": 30, "height": 20, "valign": "top", "filters": ["rotate(270)"]},
        "w=20&h=30&fit=cover&g=e&rot=90",
    ),
    (
        {"width": 30, "height": 20, "halign": "right", "valign": "top", "filters": ["rotate(180)"]},
        "w=30&h=20&fit=cover&g=sw&rot=180",
    ),
    (
        {"width": 30, "height": 20, "flip": True, "filters": ["rotate(90)"]},
        "w=20&h=30&fit=cover&flip=v&rot=270",
    ),
    # focal(): the box's centre, placed once the source is read (fractions of the whole
    # source: the renderer moves them into the crop and the turn)
    (
        {
            "crop": ((100, 0), (500, 200)),
            "width": 50,
            "height": 50,
            "filters": ["focal(150x50:250x150)"],
        },
        "crop=100,0,400,200&w=50&h=50&fit=cover&g=focal",
    ),
    (
        {
            "crop": ((100, 0), (500, 200)),
            "width": 50,
            "height": 50,
            "filters": ["focal(0x0:10x10)"],
        },
        "crop=100,0,400,200&w=50&h=50&fit=cover",
    ),
    (
        {
            "crop": ((0, 0), (400, 200)),
            "width": 50,
            "height": 50,
            "filters": ["focal(0x0:100x200)", "rotate(90)"],
        },
        "crop=0,0,400,200&w=50&h=50&fit=cover&g=focal&rot=270",
    ),
    ({"filters": ["watermark(brand/logo.png,10,10,50)"]}, "wm=logo"),
    ({"filters": ["watermark('brand/logo.png', 10, -10, 50, 20, none)"]}, "wm=logo"),
    ({"filters": ["watermark(brand%2Flogo.png,10,10,50)", "quality%2877)"]}, "wm=logo&q=77"),
]


@pytest.mark.parametrize(("options", "query"), CASES)
def test_libthumbor_urls_mean_these_native_params(options: dict[str, Any], query: str) -> None:
    params = dict(pair.split("=") for pair in query.split("&") if pair)
    assert meaning(**options) == params
    unsafe = str(CryptoURL(key=KEY).generate(unsafe=True, image_url="photo.jpg", **options))
    assert dict(dialect(unsafe=True).translate(unsafe, "").params) == params


def test_a_focal_point_without_a_crop_box_waits_for_the_sources_size() -> None:
    """focal(AxB:CxD) is in the source's pixels; native fx/fy are fractions of the whole
    upright source, so the point is placed once the source's size is known (`sized`, applied
    by variant.py), with or without a crop box or rotate(): the renderer moves it into the
    crop and turns it with the image."""

    def placed(options: dict[str, Any], size: tuple[int, int]) -> tuple[float, float] | None:
        meant = dialect().translate(signed(**options), "")
        t = parse_query(meant.params, presets={}, max_dimension=8192).transform
        assert t is not None
        return (meant.sized(t, size) if meant.sized else t).focal

    turned = {"width": 50, "height": 40, "filters": ["focal(100x200:140x280)", "rotate(90)"]}
    found = dialect().translate(signed(**turned), "")
    assert dict(found.params) == {"w": "40", "h": "50", "fit": "cover", "g": "focal", "rot": "270"}
    # The centre (120, 240) of a 400x600 source, as it is: `rot` turns it with the image.
    assert placed(turned, (400, 600)) == (0.3, 0.4)
    plain = {"width": 50, "height": 40, "filters": ["focal(100x200:140x280)"]}
    assert placed(plain, (400, 600)) == (0.3, 0.4)
    cropped = {
        "crop": ((100, 200), (140, 280)),
        "width": 50,
        "height": 50,
        "filters": ["focal(100x200:140x280)"],
    }
    assert "fx" not in dialect().translate(signed(**cropped), "").params
    assert placed(cropped, (400, 600)) == (0.3, 0.4)


def test_the_signature_is_thumbors_over_the_url_as_sent() -> None:
    """An independent HMAC over the percent-encoded rest; a `%3D` spelling of the padding is
    the same signature (thumbor unquotes it); the query string is ignored, as by thumbor."""
    rest = "300x200/smart/me%20now.jpg"
    digest = hmac.new(KEY.encode(), rest.encode(), hashlib.sha1).digest()
    signature = base64.urlsafe_b64encode(digest).decode()
    assert signature.endswith("=")
    for spelled in (signature, signature.replace("=", "%3D")):
        found = dialect().translate(f"{spelled}/{rest}", "cb=123")
        assert found == Translation(
            "media", "me now.jpg", {"w": "300", "h": "200", "fit": "cover", "g": "smart"}
        )
    assert dialect().translate(signed(image_url="me%20now.jpg"), "").path == "me now.jpg"


def spellings() -> list[str]:
    good = signed(width=300, height=200).partition("/")[0]
    standard = good.replace("-", "+").replace("_", "/")
    return [
        good.rstrip("="),  # unpadded
        good[:-2] + "==",
        good[:16],
        good + "=",
        good + "A",
        good.swapcase(),
        standard if standard != good else "+" + good[1:],
        base64.b64encode(hashlib.sha1(b"300x200/photo.jpg").digest()).decode(),  # no key
        base64.urlsafe_b64encode(
            hmac.new(KEY.encode(), b"300x200/photo.jpg", "sha256").digest()
        ).decode(),
        base64.urlsafe_b64encode(
            hmac.new(b"other", b"300x200/photo.jpg", "sha1").digest()
        ).decode(),
        "",
        "%",
        "%ff%fe",
        "null",
        "UNSAFE",
        "unsafe ",
        "\x00",
        "é" * 28,
    ]


@pytest.mark.parametrize("signature", spellings())
def test_every_other_signature_is_403(signature: str) -> None:
    with pytest.raises(BadSignature):
        dialect().translate(f"{signature}/300x200/photo.jpg", "")


def test_the_signature_covers_every_part() -> None:
    good = signed(width=300, height=200).partition("/")[0]
    for rest in (
        "300x201/photo.jpg",
        "300x200/photo.jpeg",
        "300x200/photo.jpg/",
        "fit-in/300x200/photo.jpg",
    ):
        with pytest.raises(BadSignature):
            dialect().translate(f"{good}/{rest}", "")


def test_unsafe_only_when_allowed_and_a_key_is_needed_for_signed_urls() -> None:
    with pytest.raises(BadSignature, match="allow_unsafe"):
        dialect().translate("unsafe/300x200/photo.jpg", "")
    assert dialect(unsafe=True).translate("unsafe/photo.jpg", "") == Translation(
        "media", "photo.jpg", {"fit": "contain"}
    )
    with pytest.raises(BadSignature, match="security_key"):
        dialect(key="", unsafe=True).translate(signed(width=10), "")


def test_a_full_url_resolves_in_the_http_store_it_starts_with() -> None:
    image = HTTP_STORE + "sub/a%20b.jpg"
    found = dialect().translate(signed(width=40, image_url=image), "")
    assert found == Translation("remote", "sub/a b.jpg", {"w": "40"})
    encoded = "https%3A%2F%2Fimages.example.com%2Fassets%2Fx.png"
    assert dialect().translate(signed(image_url=encoded), "").path == "x.png"
    for outside in (
        "https://images.example.com/other/x.png",
        "http://images.example.com/assets/x.png",
        "https://evil.example/x.png",
    ):
        with pytest.raises(BadRequest, match="base_url"):
            dialect().translate(signed(image_url=outside), "")


REFUSED = [
    ({"full_fit_in": True, "width": 30, "height": 0}, "full-fit-in"),
    ({"adaptive_fit_in": True, "width": 30, "height": 20, "crop": ((1, 1), (9, 9))}, "crop box"),
    ({"full_fit_in": True, "width": 30, "height": 20, "filters": ["fill(red)"]}, "fill()"),
    ({"trim": ("bottom-right", 0)}, "bottom-right"),
    ({"meta": True}, "meta"),
    ({"filters": ["brightness(10)"]}, "'brightness'"),
    ({"filters": ["grayscale()"]}, "'grayscale'"),
    ({"filters": ["max_bytes(1000)"]}, "'max_bytes'"),
    ({"filters": ["fill(auto)"]}, "fill"),
    ({"filters": ["fill(blur)"]}, "fill"),
    ({"filters": ["fill(notacolour)"]}, "fill"),
    ({"filters": ["fill(red,true)"]}, "fill_transparent"),
    ({"filters": ["format(heic)"]}, "format"),
    ({"filters": ["format()"]}, "format"),
    ({"filters": ["quality(high)"]}, "quality"),
    ({"filters": ["quality(99999999999999999999)"]}, "quality"),
    ({"filters": ["blur()"]}, "blur"),
    ({"filters": ["blur(1,2,3)"]}, "blur"),
    ({"filters": ["blur(0)"]}, "radius"),
    ({"filters": ["blur(2)", "blur(3)"]}, "more than once"),
    ({"filters": ["sharpen(1,1)"]}, "sharpen"),
    ({"filters": ["sharpen(1,1,maybe)"]}, "sharpen"),
    ({"filters": ["rotate(45)"]}, "rotate"),
    ({"filters": ["rotate(1e3)"]}, "rotate"),
    ({"filters": ["upscale(1)"]}, "upscale"),
    ({"trim": True, "filters": ["focal(10x10:20x20)"]}, "crop box"),
    ({"filters": ["focal(nonsense)"]}, "focal"),
    ({"filters": ["watermark(other.png,10,10,50)"]}, "watermark"),
    ({"filters": ["watermark(brand/logo.png)"]}, "watermark"),
    (
        {"width": 30, "height": 20, "fit_in": True, "filters": ["rotate(90)", "fill(red)"]},
        "fill() after rotate()",
    ),
    # Without fit-in too: thumbor pads (or cuts) the turned image to the unturned box,
    # 200x100 from a 100x200 turn, and 150x150 from `0x150` (measured on thumbor 7.8).
    (
        {"width": 200, "height": 100, "filters": ["rotate(90)", "fill(red)"]},
        "fill() after rotate()",
    ),
    ({"height": 150, "filters": ["rotate(270)", "fill(white)"]}, "fill() after rotate()"),
]


@pytest.mark.parametrize(("options", "named"), REFUSED)
def test_what_this_server_cannot_mean_is_a_400_naming_it(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        dialect().translate(signed(**options), "")
    assert named in refused.value.detail


@pytest.mark.parametrize(
    "rest",
    [
        "",
        "unsafe",
        "unsafe/",
        "unsafe/origx100/photo.jpg",
        "unsafe/300xorig/photo.jpg",
        "unsafe/9999999999x1/photo.jpg",
        "unsafe/1x2:99999999999x4/photo.jpg",
        "unsafe/trim:9999999999/photo.jpg",
        "unsafe/filters:nope(1):blur(3)/photo.jpg",
        "unsafe/filters:(3)/photo.jpg",
        "unsafe/%ff.jpg",
    ],
)
def test_malformed_paths_are_400(rest: str) -> None:
    with pytest.raises(BadRequest):
        dialect(unsafe=True).translate(rest, "")


def test_an_option_thumbor_does_not_know_falls_through_into_the_image_path() -> None:
    """As in thumbor: `300x200x/` matches no option, so it is part of IMAGE (then a 404)."""
    found = dialect(unsafe=True).translate("unsafe/300x200x/photo.jpg", "")
    assert found == Translation("media", "300x200x/photo.jpg", {"fit": "contain"})
    found = dialect(unsafe=True).translate("unsafe/filters:blur(3/photo.jpg", "")
    assert found == Translation("media", "filters:blur(3/photo.jpg", {"fit": "contain"})
    assert dialect(unsafe=True).translate("unsafe/300x200/", "").path == "300x200/"  # then 400
    traversal = dialect(unsafe=True).translate("unsafe/300x200/..%2F..%2Fetc/passwd", "")
    assert traversal.path == "../../etc/passwd"  # judged by paths.check_relative: 400


def test_thumbors_colour_names_are_pillows() -> None:
    """thumbor's PIL engine resolves fill(NAME) with ImageColor; our copy must agree."""
    assert {name: "#" + rgb for name, rgb in NAMED.items()} == ImageColor.colormap


def _cover(image: Image.Image, box: tuple[int, int], anchor: tuple[int, int]) -> Image.Image:
    """Crop to the box's shape at the anchor (-1/0/1 across and down), then scale to it."""
    (width, height), (across, down) = image.size, anchor
    scale = max(box[0] / width, box[1] / height)
    w, h = round(box[0] / scale), round(box[1] / scale)
    x, y = (width - w) * (across + 1) // 2, (height - h) * (down + 1) // 2
    return image.crop((x, y, x + w, y + h)).resize(box)


def _flipped(image: Image.Image, horizontal: bool, vertical: bool) -> Image.Image:
    if horizontal:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if vertical else image


@pytest.mark.parametrize("turn", [90, 180, 270, -90])
def test_rotate_moved_before_fitting_is_thumbors_picture(turn: int) -> None:
    """thumbor: cover-crop at the alignment, flip, then rotate(A) counter-clockwise; the
    native order (SPEC §15.1): rot clockwise, cover-crop at g, flip. Modelled with Pillow,
    the translated params give thumbor's picture for every alignment and flip (a wrong
    turn's direction, anchor or flip is tens of levels off). thumbor itself checks the
    same in tests/e2e/test_thumbor_reference.py once native rot= exists."""
    source = images.photo((60, 40))
    compass = {"n": (0, -1), "s": (0, 1), "e": (1, 0), "w": (-1, 0), "ne": (1, -1)}
    compass |= {"nw": (-1, -1), "se": (1, 1), "sw": (-1, 1), "center": (0, 0)}
    for halign, valign, hflip, vflip in itertools.product(
        ("left", "center", "right"), ("top", "middle", "bottom"), (False, True), (False, True)
    ):
        options = {"width": 20, "height": 15, "flip": hflip, "flop": vflip, "halign": halign}
        options |= {"valign": valign, "filters": [f"rotate({turn})"]}
        params = meaning(**options)
        anchor = (
            {"left": -1, "center": 0, "right": 1}[halign],
            {"top": -1, "middle": 0, "bottom": 1}[valign],
        )
        theirs = _flipped(_cover(source, (20, 15), anchor), hflip, vflip).rotate(turn, expand=True)
        turned = source.rotate(-int(params.get("rot", "0")), expand=True)
        box = (int(params["w"]), int(params["h"]))
        ours = _cover(turned, box, compass[params.get("g", "center")])
        ours = _flipped(ours, "h" in params.get("flip", ""), "v" in params.get("flip", ""))
        assert ours.size == theirs.size, options
        # Equal up to the crop's rounding (floor on the other side once turned): < 1 level.
        assert sum(ImageStat.Stat(ImageChops.difference(ours, theirs)).mean) / 3 < 1, options
