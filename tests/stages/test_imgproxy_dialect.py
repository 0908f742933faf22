"""imgproxy (Go) URLs -> the native store path and parameters (SPEC §15.3): its signature,
its options in full and short names, its source forms; a 403 for any other signature, a 400
naming anything the native transform cannot express."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from imgproxy.dialects import build_dialects
from imgproxy.dialects.imgproxy import ImgproxyUrls
from imgproxy.errors import BadRequest, BadSignature, ConfigError
from imgproxy.settings import ImgproxyDialectSettings, Settings, WatermarkSettings

# imgproxy's documented example (docs/usage/signing_url): key "secret", salt "hello".
DOCS_KEY, DOCS_SALT = "736563726574", "68656C6C6F"
DOCS_PATH = "/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png"
DOCS_SIGNATURE = "oKfUtW34Dvo2BGQehJFR4Nr0_rIjOtdtzJ3QFsUcXH8"
OTHER_KEY, OTHER_SALT = "a1b2c3d4" * 8, "0f1e2d3c" * 8
MARK = WatermarkSettings(store="media", path="logo.png", position="se", scale=0.2)


def dialect(**config: object) -> ImgproxyUrls:
    settings = ImgproxyDialectSettings(store="media", **config)  # type: ignore[arg-type]
    return ImgproxyUrls(
        settings,
        http_stores={"web": "http://example.com/images", "cdn": "https://cdn.example.com/a/"},
        watermarks={"logo": MARK},
    )


INSECURE = dialect(allow_insecure=True, watermark="logo")


def sign(path: str, key: str, salt: str, size: int = 32) -> str:
    """The signature as imgproxy's docs state it, written out independently of the code."""
    mac = hmac.new(bytes.fromhex(key), bytes.fromhex(salt) + path.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:size]).decode().rstrip("=")


def params(options: str, source: str = "plain/a.jpg") -> dict[str, str]:
    return dict(INSECURE.translate(f"insecure/{options}/{source}".replace("//", "/"), "").params)


def test_the_documented_example_signature_is_reproduced_and_accepted() -> None:
    assert sign(DOCS_PATH, DOCS_KEY, DOCS_SALT) == DOCS_SIGNATURE
    docs = dialect(keys=(DOCS_KEY,), salts=(DOCS_SALT,))
    meant = docs.translate(DOCS_SIGNATURE + DOCS_PATH, "")
    assert (meant.store, meant.path) == ("web", "curiosity.jpg")
    assert dict(meant.params) == {"fit": "cover", "w": "300", "h": "400", "g": "smart", "fm": "png"}


def test_every_key_salt_pair_signs_and_signature_size_truncates() -> None:
    path = "/w:100/plain/a.jpg"
    pairs = dialect(keys=(DOCS_KEY, OTHER_KEY), salts=(DOCS_SALT, OTHER_SALT))
    for key, salt in ((DOCS_KEY, DOCS_SALT), (OTHER_KEY, OTHER_SALT)):
        assert pairs.translate(sign(path, key, salt) + path, "").params["w"] == "100"
    short = dialect(keys=(DOCS_KEY,), salts=(DOCS_SALT,), signature_size=8)
    assert len(sign(path, DOCS_KEY, DOCS_SALT, 8)) == 11
    assert short.translate(sign(path, DOCS_KEY, DOCS_SALT, 8) + path, "").path == "a.jpg"
    with pytest.raises(BadSignature):
        short.translate(sign(path, DOCS_KEY, DOCS_SALT) + path, "")  # the full one is not it


GOOD = sign("/w:100/plain/a.jpg", DOCS_KEY, DOCS_SALT)


@pytest.mark.parametrize(
    "signature",
    [
        GOOD + "=",  # padded
        GOOD[:-1],  # short
        GOOD + "A",  # long
        GOOD.swapcase(),
        GOOD.replace("-", "+").replace("_", "/"),  # the other alphabet
        sign("/w:100/plain/a.jpg", OTHER_KEY, DOCS_SALT),  # another key
        sign("/w:100/plain/a.jpg", DOCS_KEY, OTHER_SALT),  # another salt
        sign("/w:101/plain/a.jpg", DOCS_KEY, DOCS_SALT),  # another path
        "insecure",  # not allowed here
        "unsafe",
        "",
        "é" * 43,
        "%00" * 10,
    ],
)
def test_any_other_signature_spelling_is_403(signature: str) -> None:
    signed = dialect(keys=(DOCS_KEY,), salts=(DOCS_SALT,))
    assert signed.translate(GOOD + "/w:100/plain/a.jpg", "").params["w"] == "100"
    with pytest.raises(BadSignature):
        signed.translate(signature + "/w:100/plain/a.jpg", "")


def test_insecure_only_when_allowed_and_never_without_keys() -> None:
    assert INSECURE.translate("insecure/plain/a.jpg", "").path == "a.jpg"
    with pytest.raises(BadSignature):
        INSECURE.translate("anything/plain/a.jpg", "")  # imgproxy without keys would take it


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("rs:fill:300:400:0", {"fit": "cover", "w": "300", "h": "400"}),
        ("resize:fit:300:400:1", {"fit": "contain", "w": "300", "h": "400", "enlarge": "1"}),
        ("rs:force:300:400", {"fit": "fill", "w": "300", "h": "400"}),
        ("rs:fill-down:300:400", {"fit": "cover", "w": "300", "h": "400"}),
        ("rs:fill-down:300:400:1", {"fit": "cover", "w": "300", "h": "400", "enlarge": "1"}),
        ("rs:auto:300:0", {"fit": "contain", "w": "300"}),
        ("rs:auto:300:400/g:we", {"fit": "auto", "w": "300", "h": "400", "g": "w"}),
        ("rs:fit:300:400:0:1", {"fit": "pad", "w": "300", "h": "400"}),
        ("s:300:400/rt:fill", {"fit": "cover", "w": "300", "h": "400"}),
        ("size:0:200:t", {"fit": "contain", "h": "200", "enlarge": "1"}),
        ("w:300/h:400/ex:1:ce", {"fit": "pad", "w": "300", "h": "400"}),
        ("width:300/height:400/extend:true/enlarge:1", {
            "fit": "pad", "w": "300", "h": "400", "enlarge": "1",
        }),
        ("w:300/dpr:2", {"fit": "contain", "w": "300", "dpr": "2"}),
        ("rs:fill:300:400/g:soea", {"fit": "cover", "w": "300", "h": "400", "g": "se"}),
        ("rs:fill:300:400/gravity:nowe:0:0", {"fit": "cover", "w": "300", "h": "400", "g": "nw"}),
        ("rs:fill:300:400/g:sm", {"fit": "cover", "w": "300", "h": "400", "g": "smart"}),
        ("rs:fill:30:40/g:fp:0.25:0.75", {
            "fit": "cover", "w": "30", "h": "40", "g": "focal", "fx": "0.25", "fy": "0.75",
        }),
        ("w:10/w:20", {"fit": "contain", "w": "20"}),  # the last one wins, as in imgproxy
        ("q:80/f:jpg", {"q": "80", "fm": "jpeg"}),
        ("quality:0/format:webp", {"fm": "webp"}),  # q 0: the format's default
        ("ext:avif", {"fm": "avif"}),
        ("bg:255:0:16", {"bg": "ff0010"}),
        ("background:FFAA00", {"bg": "ffaa00"}),
        ("bg:", {"fit": "contain"}),
        ("pr:thumb", {"p": "thumb"}),
        ("preset:thumb/cb:v2", {"p": "thumb", "v": "v2"}),
        ("cachebuster:2024-01", {"fit": "contain", "v": "2024-01"}),
        ("sm:1", {"fit": "contain"}),
        ("strip_metadata:false", {"fit": "contain"}),
        # The operations of SPEC §15.1 (native parameters from the `ops` branch).
        ("c:0.5:0.25", {"crop": "0.25,0.375,0.5,0.25"}),
        ("crop:0.5:0:nowe", {"crop": "0.0,0.0,0.5,1.0"}),
        ("c:0.5:0.5:soea", {"crop": "0.5,0.5,0.5,0.5"}),
        ("c:0.2:0.4:fp:0.95:0.1", {"crop": "0.8,0.0,0.2,0.4"}),
        ("g:no/c:0.5:0.5", {"g": "n", "crop": "0.25,0.0,0.5,0.5"}),  # crop's gravity defaults to g
        ("c:100:50:nowe", {"crop": "0,0,100,50"}),
        ("c:0:0", {"fit": "contain"}),
        ("t:10", {"trim": "10"}),
        ("trim:0", {"trim": "0"}),
        ("rot:90", {"rot": "90"}),
        ("rotate:-90", {"rot": "270"}),
        ("rot:360", {"fit": "contain"}),
        ("fl:1:0", {"flip": "h"}),
        ("flip:t:t", {"flip": "hv"}),
        ("fl:0:1", {"flip": "v"}),
        ("bl:2.5", {"blur": "2.5"}),
        ("blur:0", {"fit": "contain"}),
        ("sh:0.7", {"sharpen": "0.7"}),
        ("pix:8", {"pixelate": "8"}),
        ("pd:10", {"pad": "10"}),
        ("padding:10:20", {"pad": "10,20,10,20"}),
        ("pd:1:2:3:4/dpr:2", {"pad": "2,4,6,8"}),  # padding follows dpr in imgproxy
        ("pd::5", {"pad": "0,5,0,5"}),
        ("wm:1", {"wm": "logo"}),
        ("watermark:1:soea:0:0:0.2", {"wm": "logo"}),
        ("wm:0", {"fit": "contain"}),
    ],
)  # fmt: skip
def test_options_map_onto_native_params(options: str, expected: dict[str, str]) -> None:
    assert params(options) == expected


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("zoom:2", "'zoom'"),
        ("min-width:10", "'min-width'"),
        ("rs:nope:1:1", "'rs'"),
        ("w:-1", "'w'"),
        ("w:1e3", "'w'"),
        ("w:99999999999", "'w'"),
        ("w:1:2", "'w'"),
        ("h:abc", "'h'"),
        ("dpr:0.5", "'dpr'"),
        ("dpr:nan", "'dpr'"),
        ("el:maybe", "'el'"),
        ("rs:force:300:0/t:10", "force with a 0 side"),  # sized by imgproxy after the trim
        ("rs:fill:300:400:0:1/fl:1", "extend (other than fit"),
        ("ex:1:no", "'ex'"),
        ("g:xx", "'g'"),
        ("g:no:10:5", "'g'"),
        ("g:fp:2:0.5", "'g'"),
        ("g:sm:1", "'g'"),
        ("c:100:50", "crop"),  # a pixel size placed by the centre gravity
        ("c:0.5:50:nowe", "crop"),
        ("c:0.5:0.5:sm", "crop"),
        ("t:10:ff00ff", "'t'"),
        ("t:10::1", "'t'"),
        ("t:300", "'t'"),
        ("rot:45", "'rot'"),
        ("fl:x", "'fl'"),
        ("bl:1000", "'bl'"),
        ("bl:inf", "'bl'"),
        ("pix:1000", "'pix'"),
        ("pd:5000", "'pd'"),
        ("pd:1:2:3:4:5", "'pd'"),
        ("bg:300:0:0", "'bg'"),
        ("bg:zzzzzz", "'bg'"),
        ("q:101", "'q'"),
        ("f:tiff", "'f'"),
        ("wm:0.5", "watermark"),
        ("wm:1:noea", "watermark"),
        ("wm:1:soea:5:5", "'wm'"),
        ("wm:1:soea:0:0:0.5", "watermark"),
        ("pr:a:b", "'pr'"),
        ("cb:" + "x" * 65, "'cb'"),
        ("cb:a%20b", "'cb'"),
        ("sm:perhaps", "'sm'"),
        (":", "''"),
        ("w" * 200 + ":1", "unknown"),
    ],
)
def test_anything_else_is_400_naming_the_option(options: str, named: str) -> None:
    with pytest.raises(BadRequest) as caught:
        params(options)
    assert named in str(caught.value)


def test_sources_plain_base64_local_and_http_stores() -> None:
    def meant(source: str) -> tuple[str, str, dict[str, str]]:
        result = INSECURE.translate("insecure/w:10/" + source, "")
        return result.store, result.path, dict(result.params)

    b64 = base64.urlsafe_b64encode(b"local:///dir/a b.jpg").decode()
    assert meant("plain/dir/a%20b.jpg@png")[:2] == ("media", "dir/a b.jpg")
    assert meant("plain/dir/a%20b.jpg@png")[2]["fm"] == "png"
    assert meant("plain/local:///dir/a.jpg")[:2] == ("media", "dir/a.jpg")
    assert meant(f"{b64[:5]}/{b64[5:11]}/{b64[11:]}.webp")[:2] == ("media", "dir/a b.jpg")
    assert meant(b64.rstrip("=") + ".webp")[2]["fm"] == "webp"
    assert meant("plain/http://example.com/images/x/y.jpg")[:2] == ("web", "x/y.jpg")
    assert meant("plain/https%3A%2F%2Fcdn.example.com%2Fa%2Fz.png")[:2] == ("cdn", "z.png")
    assert meant("plain/%2Fa.jpg")[:2] == ("media", "a.jpg")
    # The extension wins over `format`, as in imgproxy.
    assert INSECURE.translate("insecure/f:png/plain/a.jpg@webp", "").params["fm"] == "webp"
    # A query string is ignored: imgproxy reads the path only.
    assert INSECURE.translate("insecure/plain/a.jpg", "x=1").path == "a.jpg"


@pytest.mark.parametrize(
    "source",
    [
        "",
        "plain/",
        "plain/a.jpg@png@webp",
        "plain/a.jpg@tiff",
        "plain/http://evil.example.net/images/a.jpg",
        "plain/http://example.com/imagesX/a.jpg",  # not under the base URL's path
        "plain/s3://bucket/a.jpg",
        "plain/file:///etc/passwd",
        "plain/a.jpg%3Fx=1",
        "plain/%FF.jpg",
        "!!!!",
        "aGVsbG8.png.jpg",
        "a",  # one base64 character decodes to nothing
        "_w",  # bytes that are not UTF-8
        "aHR0cDovL2V2aWwuZXhhbXBsZS5uZXQvYS5qcGc",  # http://evil.example.net/a.jpg
    ],
)
def test_bad_sources_are_400(source: str) -> None:
    with pytest.raises(BadRequest):
        INSECURE.translate("insecure/w:10/" + source, "")


def test_dot_segments_reach_the_path_check_decoded() -> None:
    """The dialect decodes; the shared check (paths.check_relative) judges the result."""
    assert INSECURE.translate("insecure/plain/%252e%252e/etc/passwd", "").path == "../etc/passwd"


def test_the_dialect_is_built_from_settings(tmp_path: Path) -> None:
    table: dict[str, Any] = {"store": "media", "keys": [DOCS_KEY], "salts": [DOCS_SALT]}
    data = {
        "stores": {"media": {"kind": "fs", "root": str(tmp_path)}},
        "watermarks": {"logo": {"store": "media", "path": "logo.png"}},
        "dialects": {"imgproxy": table},
    }
    settings = Settings.from_mapping(data, base_dir=tmp_path, env={})
    built = build_dialects(settings, {"media": object()})
    assert isinstance(built["imgproxy"], ImgproxyUrls)
    table["watermark"] = "nope"
    with pytest.raises(ConfigError, match="watermark"):
        build_dialects(Settings.from_mapping(data, base_dir=tmp_path, env={}), {"media": object()})
